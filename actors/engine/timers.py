"""A host's durable timers, and the commands a restore queued to send again.

Deadlines live in each saga's state (so in its log); this heap only says when
to look. An entry names the deadline it was armed for: once the saga moved on
(ended, or re-armed with another deadline), the entry is stale and skipped.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from actors.core import SagaState


class Timer(NamedTuple):
    fire_at: int
    saga_id: str
    partition: int
    #: The deadline the timer was armed for (the state's, at the time).
    deadline: int


class Timers:
    """Deadlines in the order they fall due."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []

    def arm(self, partition: int, state: SagaState, not_before: int = 0) -> None:
        """Wake for the saga's deadline (or at ``not_before``, if later)."""
        if state.deadline:
            timer = Timer(
                max(state.deadline, not_before),
                state.saga_id,
                partition,
                state.deadline,
            )
            heapq.heappush(self._heap, timer)

    def due(self, now: int) -> list[Timer]:
        """Take every timer whose time has come."""
        taken = []
        while self._heap and self._heap[0].fire_at <= now:
            taken.append(heapq.heappop(self._heap))
        return taken

    def put_back(self, timers: Iterable[Timer]) -> None:
        for timer in timers:
            heapq.heappush(self._heap, timer)

    def clear(self) -> None:
        self._heap.clear()


class Resend(NamedTuple):
    partition: int
    saga_id: str
    #: The state's sequence number when queued: a saga that moved on since
    #: sent its newer command already.
    seq: int


class ResendQueue:
    """Commands to send again after a restore, a bounded share at a time."""

    def __init__(self) -> None:
        self._queue: deque[Resend] = deque()

    def add(self, partition: int, state: SagaState) -> None:
        self._queue.append(Resend(partition, state.saga_id, state.seq))

    def pop(self) -> Resend:
        """The oldest entry (the queue must not be empty)."""
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()
