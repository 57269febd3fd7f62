"""Following a run on ``saga.events``: which of its sagas started and ended, how,
and when; and waiting for them all to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayError

from actors.core import OUTCOMES, Fence
from actors.errors import RestoreError
from events.errors import MessageDecodeError
from events.transport.reader import PartitionTail
from events.transport.settings import KafkaSettings
from events.transport.types import TP


class Follower:
    """Tails saga.events from given offsets; counts this run's outcomes.

    It reads through the fence every reader of the log applies, joining the log
    where the run starts: a replaced owner's records (appended after the claim
    that replaced it) count for nothing, and claims are no records."""

    def __init__(self, kafka: KafkaSettings, starts: dict[TP, int], ids: set[str]):
        self._ids = ids
        # Joined: the run starts at the log's end, not knowing the epochs there.
        self._fence = Fence(joined=True)
        self.started: dict[str, int] = {}
        self.newest_at = 0
        self.first_at = 0
        self.ended: dict[str, tuple[str, int]] = {}
        #: Records that are not saga log records or claims, or that the fence
        #: refuses (above the epoch in force: a claim lost): counted and
        #: passed over.
        self.unreadable = 0
        self._tail = PartitionTail(kafka, starts)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for raw in self._tail.poll(timeout_ms=200):
                try:
                    record = self._fence.read(raw.partition, raw.value)
                except (MessageDecodeError, RestoreError):
                    # Counting the run matters more than this record: the
                    # run's summary warns of it.
                    self.unreadable += 1
                    continue
                if record is None:
                    continue  # a claim, or a replaced owner's record
                self.newest_at = max(self.newest_at, record.at)
                self.first_at = self.first_at or record.at
                if record.saga_id not in self._ids:
                    continue
                with self._lock:
                    self.started.setdefault(record.saga_id, record.at)
                    last = record.events[-1]
                    outcome = OUTCOMES.get(type(last))
                    if outcome is not None:
                        self.ended[record.saga_id] = (outcome, record.at)

    def count(self) -> int:
        with self._lock:
            return len(self.ended)

    def outcomes(self) -> dict[str, str]:
        """Each ended saga's outcome."""
        with self._lock:
            return {saga_id: outcome for saga_id, (outcome, _) in self.ended.items()}

    def latencies(self) -> list[int]:
        """From each ended saga's first record to its outcome's, in ms."""
        with self._lock:
            return [
                at - self.started[saga_id]
                for saga_id, (_, at) in self.ended.items()
                if saga_id in self.started
            ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._tail.close()


def await_ends(
    follower: Follower,
    total: int,
    stall_timeout_s: float,
    report: Callable[[], None],
    say: Callable[[str], None],
) -> None:
    """Wait until ``total`` sagas ended, or none did for ``stall_timeout_s``."""
    last_change, last_count = time.monotonic(), -1
    while (done := follower.count()) < total:
        if done != last_count:
            last_change, last_count = time.monotonic(), done
        elif time.monotonic() - last_change > stall_timeout_s:
            say(f"no saga ended for {stall_timeout_s:g} s; giving up on the rest")
            break
        report()
        time.sleep(0.25)


class LagSampler:
    """How far the projection trails the log, in seconds, sampled at most
    every ``every_s`` while the run lasts (sends included: under chaos the
    load is sent until near the end). Never waits on the projection: the
    run's loop, which also strikes the chaos schedule on time, calls it, and
    a projection restarting would hold the loop up (a fault struck late
    meets a run that has ended)."""

    def __init__(self, follower: Follower, projection: Any, every_s: float = 0.25):
        self._follower = follower
        self._projection = projection
        self._every_s = every_s
        self._next = 0.0
        #: The question asked and not yet answered.
        self._asked: Any = None
        #: Whether the projection has written a batch of this run yet.
        self._wrote = False
        self.lags: list[float] = []

    def sample(self) -> None:
        if self._asked is not None:
            ready, _ = ray.wait([self._asked], timeout=0)
            if not ready:
                return  # the projection is busy, or restarting: later
            try:
                reached = ray.get(self._asked)
            except RayError:
                reached = None  # it died meanwhile: no sample this time
            self._asked = None
            if reached is not None:
                self._record(reached)
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every_s
            self._asked = self._projection.newest_at.remote()

    def _record(self, reached: int) -> None:
        if reached:
            self._wrote = True
        elif self._wrote:
            return  # restarted, and nothing written since: it restores first
        # Before its first batch the projection reaches back to the run's
        # first record.
        reached = reached or self._follower.first_at
        newest = self._follower.newest_at
        if newest:
            self.lags.append(max(0, newest - reached) / 1000)
