"""The host's clock port: wall time that moves only as the monotonic clock does.

Deadlines are written to the saga log as epoch milliseconds, so that a host that
restarts (on another machine, too) re-arms them where they were: they must be
wall time. But the wall clock jumps (an NTP step, a virtual machine resumed, a
hand-set date): forward, every timer would fire at once and sagas would give up
on steps still in time; back, none would fire for as long. So a host reads the
wall clock once, when it starts, and from then on adds monotonic time: a jump
while it runs moves nothing, and a restart takes up the wall clock again.

The price: a wall clock that was wrong at start (and a correcting NTP step
later) is followed only at the host's next start, when deadlines written
meanwhile are read against the corrected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """Seconds since the epoch, steady: ``wall()`` at start plus monotonic time."""

    __slots__ = ("_base", "_monotonic")

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._base = wall() - monotonic()

    def __call__(self) -> float:
        return self._base + self._monotonic()
