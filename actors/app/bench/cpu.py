"""Where the CPU goes while the platform runs flat out: the CPU time each part
of it spends during a measure, per saga.

Each actor's process reports its own ``time.process_time()`` (all its threads:
the Kafka client's, Ray's, the actor's own), asked through Ray, so an actor on
another node counts too. The embedded broker's time is read from ``/proc``
when it runs here (Linux); the bench's own process (the client sending sagas
and reading their ends, and the Ray driver) from its ``process_time()``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import ray

from actors.app.platform import Platform
from events.transport.procstat import STIME, UTIME, stat_fields

#: The parts, in the order a saga meets them.
PARTS = ("bench client", "broker", "routers", "hosts", "participants", "projection")


def _process_time(_actor: object) -> float:
    """Runs inside an actor (``__ray_call__`` passes the actor first)."""
    return time.process_time()


class CpuMeter:
    """Reads the CPU seconds each part of a running platform has spent."""

    def __init__(self, platform: Platform, broker_pids: tuple[int, ...]) -> None:
        self._actors: dict[str, list[Any]] = {
            "routers": platform.engine.routers,
            "hosts": platform.engine.hosts,
            "participants": list(platform.participants.values()),
            "projection": [platform.projection],
        }
        self.projection = platform.projection
        #: The embedded broker's processes: itself and its long-poll relay.
        self._broker = broker_pids

    def read(self) -> dict[str, float]:
        """CPU seconds so far, by part (a part that cannot be read is absent)."""
        refs = {
            part: [a.__ray_call__.remote(_process_time) for a in actors]
            for part, actors in self._actors.items()
            if actors
        }
        spent = {"bench client": time.process_time()}
        for part, calls in refs.items():
            spent[part] = sum(ray.get(calls, timeout=30))
        broker = [_proc_cpu(pid) for pid in self._broker]
        if broker and None not in broker:
            spent["broker"] = sum(b for b in broker if b is not None)
        return spent


def projection_settled(
    projection: Any, quiet_s: float = 1.0, timeout_s: float = 60.0
) -> float:
    """Until the projection's count of saga events holds still for ``quiet_s``:
    it trails the log, and its work for the sagas measured is theirs. Returns
    when (``time.monotonic()``) the count was first seen at its final value,
    to a tenth of a second."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        events = ray.get(projection.stats.remote(), timeout=30)["events"]
        now = time.monotonic()
        if events != last:
            last, since = events, now
        elif now - since >= quiet_s:
            break
        time.sleep(0.1)
    return since


def per_saga(
    before: Mapping[str, float],
    after: Mapping[str, float],
    sagas: int,
    wall_s: float,
) -> dict[str, Any]:
    """Microseconds of CPU per saga by part, their total, and the cores kept
    busy on average over ``wall_s``."""
    spent = {p: after[p] - before[p] for p in PARTS if p in before and p in after}
    total = sum(spent.values())
    return {
        "us_per_saga": {p: round(s * 1e6 / sagas) for p, s in spent.items()},
        "total_us_per_saga": round(total * 1e6 / sagas),
        "cores_busy": round(total / wall_s, 2) if wall_s > 0 else None,
    }


def _proc_cpu(pid: int) -> float | None:
    """A local process's CPU seconds (user + system), or ``None`` without
    ``/proc`` or once it is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return (int(fields[UTIME]) + int(fields[STIME])) / os.sysconf("SC_CLK_TCK")
