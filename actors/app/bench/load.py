"""Driving sagas for ``saga bench`` and timing each from the client's send to
its terminal record in ``saga.events``.

The end of a saga is the Kafka timestamp of the log record holding its
outcome: the time the host handed it to its producer, so the tail that finds
it (and how often it polls) adds nothing to the figure. Sends are timed with
the same wall clock, on the same machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from actors.app.client import SagaClient
from actors.core import TERMINAL_EVENTS, Fence
from events.transport.reader import PartitionTail
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS


class Ends:
    """Tails ``saga.events`` (from ``starts``) in a thread: when each saga's
    outcome was logged (Kafka timestamp, epoch ms)."""

    def __init__(self, kafka: KafkaSettings, starts: dict[TP, int]) -> None:
        self.at: dict[str, int] = {}
        self._fence = Fence(joined=True)
        self._tail = PartitionTail(kafka, starts)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = {}
            for raw in self._tail.poll(timeout_ms=100):
                record = self._fence.read(raw.partition, raw.value)
                if record is not None and isinstance(
                    record.events[-1], TERMINAL_EVENTS
                ):
                    found[record.saga_id] = raw.timestamp
            if found:
                with self._changed:
                    self.at.update(found)
                    self._changed.notify_all()

    def wait(self, saga_ids: set[str], timeout_s: float) -> set[str]:
        """Until every saga of ``saga_ids`` ended or ``timeout_s`` passed; the
        ones still running."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                missing = {s for s in saga_ids if s not in self.at}
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._tail.close()


class Timed(NamedTuple):
    """Sagas sent (by id: when, epoch ms) and those that did not end in time."""

    sent: dict[str, float]
    unfinished: set[str]

    def latencies(self, ends: Ends) -> list[float]:
        """Each ended saga's latency in ms, in the order sent."""
        return [ends.at[s] - t for s, t in self.sent.items() if s in ends.at]


def deposit_input(i: int) -> dict[str, Any]:
    """A deposit the demo data completes (see ``actors.participants.demo``)."""
    n = 1 + i % 100
    return {"userId": f"u-{n}", "accountId": f"a-{n}", "amount": 10, "currency": "USD"}


def closed_loop(
    client: SagaClient, ends: Ends, count: int, prefix: str, timeout_s: float = 30.0
) -> Timed:
    """``count`` sagas one at a time: each sent when the one before ended."""
    sent: dict[str, float] = {}
    unfinished: set[str] = set()
    for i in range(count):
        saga_id = f"{prefix}-{i:06d}"
        sent[saga_id] = time.time() * 1000
        client.start("deposit", deposit_input(i), saga_id)
        unfinished |= ends.wait({saga_id}, timeout_s)
    return Timed(sent, unfinished)


def offered(
    client: SagaClient,
    ends: Ends,
    rate: float,
    seconds: float,
    prefix: str,
    timeout_s: float = 60.0,
) -> Timed:
    """Sagas sent at ``rate`` a second for ``seconds`` (an open loop: sends
    never wait for ends), then waited for."""
    sent: dict[str, float] = {}
    begun = time.monotonic()
    for due in ticks(rate, seconds):
        pause = begun + due[0] - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        at = time.time() * 1000
        batch = [(f"{prefix}-{i:06d}", i) for i in due[1]]
        client.start_many([("deposit", deposit_input(i), s) for s, i in batch])
        sent.update((s, at) for s, _ in batch)
    return Timed(sent, ends.wait(set(sent), timeout_s))


def saturated(
    client: SagaClient,
    ends: Ends,
    count: int,
    prefix: str,
    window: int = 2_000,
    timeout_s: float = 120.0,
) -> Timed:
    """``count`` sagas as fast as the platform ends them: sent in chunks while
    fewer than ``window`` are in flight (an unbounded burst only queues, and
    queued commands time out), then waited for. When none ends for
    ``timeout_s`` with the window full, the rest are not sent: the sagas sent
    and not ended are reported unfinished."""
    sent: dict[str, float] = {}
    ids = [f"{prefix}-{i:06d}" for i in range(count)]
    chunk = max(1, window // 10)
    before = len(ends.at)  # the sagas of earlier measures, all ended
    for start in range(0, count, chunk):
        if not _window_opens(ends, lambda: len(sent) - window + before, timeout_s):
            return Timed(sent, ends.wait(set(sent), 0))
        at = time.time() * 1000
        batch = ids[start : start + chunk]
        client.start_many(
            [("deposit", deposit_input(start + i), s) for i, s in enumerate(batch)]
        )
        sent.update((s, at) for s in batch)
    return Timed(sent, ends.wait(set(sent), timeout_s))


def _window_opens(ends: Ends, needed: Callable[[], int], timeout_s: float) -> bool:
    """Until ``len(ends.at)`` reaches ``needed()``; ``False`` once no saga
    ended for ``timeout_s``."""
    last, since = len(ends.at), time.monotonic()
    while len(ends.at) < needed():
        if len(ends.at) != last:
            last, since = len(ends.at), time.monotonic()
        elif time.monotonic() - since > timeout_s:
            return False
        time.sleep(0.005)
    return True


def ticks(rate: float, seconds: float) -> Iterator[tuple[float, range]]:
    """(when, which sagas) every 5 ms: the sagas due by then."""
    total = int(rate * seconds)
    step = 0.005
    done = 0
    t = 0.0
    while done < total:
        due = min(total, int(rate * t) + 1)
        if due > done:
            yield t, range(done, due)
            done = due
        t += step


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 (nearest rank), in ms to 0.1."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def all_partitions(count: int) -> dict[TP, int]:
    return {TP(SAGA_EVENTS, p): 0 for p in range(count)}
