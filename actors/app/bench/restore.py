"""How fast a host's sagas come back, and what an in-flight saga costs in
memory: measured by ``saga bench`` and by ``benchmarks/restore.py``.

A host is driven in-process (no Ray, no router): records are fed to it as a
router would bring them, with made-up offsets, and it logs to the broker it
is given. Every saga id carries the clock, so a broker that already holds a
log (``saga bench`` measures on its own broker once the platform stopped)
never sees an id twice.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any, NamedTuple

from actors.core import start_message
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from actors.engine.settings import HostSettings
from actors.engine.stats import HostStats
from events.transport.settings import KafkaSettings
from events.wire.messages import EventMessage, Message, MessageCodec

#: The deposit every measured saga starts with.
INPUT = {
    "userId": "user-1234",
    "accountId": "acct-987",
    "amount": 250,
    "currency": "USD",
}


class Driver:
    """Feeds a host the records a router would, with made-up offsets."""

    def __init__(self) -> None:
        self.codec = MessageCodec()
        self.offset = 0

    def starts(self, ids: list[str]) -> list[Inbound]:
        now = datetime.now(UTC)
        return [
            self._in("saga.requests", i, start_message(i, "deposit", INPUT, now))
            for i in ids
        ]

    def verified(self, ids: list[str], success: bool = True) -> list[Inbound]:
        now = datetime.now(UTC)
        return [
            self._in(
                "user.events.verify",
                i,
                EventMessage(
                    message_id=f"r-{i}",
                    saga_id=i,
                    step_id="verify_user",
                    timestamp=now,
                    success=success,
                ),
            )
            for i in ids
        ]

    def _in(self, topic: str, saga_id: str, message: Message) -> Inbound:
        self.offset += 1
        return Inbound(topic, 0, self.offset, saga_id, self.codec.encode(message))


def feed(host: SagaHost, items: list[Inbound], batch: int = 2_000) -> None:
    for i in range(0, len(items), batch):
        host.handle(items[i : i + batch])


def quiet_host(kafka: KafkaSettings) -> SagaHost:
    """A host of every partition with no timer thread and snapshots only when
    asked for: the measurement decides what happens when."""
    partitions = kafka.topics.partitions
    return own(
        SagaHost(
            kafka, partitions, HostSettings(snapshot_every=10**9), start_timers=False
        ),
        range(partitions),
    )


class Restore(NamedTuple):
    """One timed restore: until the new host takes work, then until it has
    re-sent the commands the log tail issued; and its stats."""

    seconds: float
    resend_s: float
    stats: HostStats


def host_restore(
    kafka: KafkaSettings, sagas: int, history: int, snapshot: bool
) -> Restore:
    """A host logs ``history`` sagas that end, then starts ``sagas`` and has a
    reply for half of them; with ``snapshot`` it snapshots then, and takes
    the other half's replies (the log tail); then it goes away and a new
    host's restore is timed."""
    driver = Driver()
    ended = [f"old-{time.monotonic_ns()}-{i}" for i in range(history)]
    ids = [f"saga-{time.monotonic_ns()}-{i}" for i in range(sagas)]
    first = quiet_host(kafka)
    # Sagas that ended before: log a whole-log replay must read past.
    feed(first, driver.starts(ended))
    feed(first, driver.verified(ended, success=False))
    feed(first, driver.starts(ids))
    feed(first, driver.verified(ids[: sagas // 2]))
    if snapshot:
        first.snapshot()
    feed(first, driver.verified(ids[sagas // 2 :]))  # the tail after the snapshot
    first.close()
    started = time.perf_counter()
    second = quiet_host(kafka)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    while second.stats().resend_pending:
        second.fire_timers()
    resending = time.perf_counter() - started
    stats = second.stats()
    second.close()
    return Restore(elapsed, resending, stats)


def memory_per_saga(kafka: KafkaSettings, sagas: int) -> float:
    """Bytes retained inside a host (tracemalloc) per in-flight saga, with its
    timer entry and the map that holds it: ``sagas`` started, each holding a
    reply and waiting on its next step."""
    partitions = kafka.topics.partitions
    driver = Driver()
    ids = [
        f"{time.monotonic_ns():x}-{i:06d}-4b1c-9f0e-2a7d5c3e8b61" for i in range(sagas)
    ]
    starts, verified = driver.starts(ids), driver.verified(ids)
    host = own(SagaHost(kafka, partitions, start_timers=False), range(partitions))
    # Sagas the log left in flight (a bench's unfinished ones) are not counted.
    already = host.stats().in_flight
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    feed(host, starts)
    feed(host, verified)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert host.stats().in_flight - already == sagas
    host.close()
    return retained / sagas


def restore_and_memory(kafka: KafkaSettings, sagas: int) -> dict[str, Any]:
    """``saga bench``'s figures: a restore of ``sagas`` in-flight sagas from a
    snapshot and a log tail of half as many records, and the memory each
    in-flight saga takes."""
    restored = host_restore(kafka, sagas, history=0, snapshot=True)
    stats = restored.stats
    return {
        "restore": {
            "in_flight": sagas,
            "from_snapshot": stats.restored_sagas,
            "tail_records": stats.restored_records,
            "seconds": round(restored.seconds, 3),
            "sagas_per_s": round(stats.in_flight / restored.seconds, 1),
            "resend_s": round(restored.resend_s, 3),
        },
        "memory": {
            "in_flight": sagas,
            "bytes_per_saga": round(memory_per_saga(kafka, sagas)),
        },
    }
