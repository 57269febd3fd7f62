"""SagaHost in-process on the real broker: durable timers, snapshots, restore.

No Ray here: the host is a plain class that :mod:`actors.runtime` wraps, so
these tests drive it directly with a clock they control.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest
from kafka import TopicPartition

from actors.host import HostSettings, Inbound, SagaHost
from actors.requests import start_message
from actors.saga import SagaState, Status
from events.messages import CommandMessage, EventMessage, MessageCodec
from events.partitions import home_partition
from events.publisher import KafkaMessagePublisher
from events.reader import read_to_end
from events.settings import KafkaSettings
from events.topics import SAGA_SNAPSHOTS
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2
INPUT = {"userId": "u", "accountId": "a", "amount": 5, "currency": "USD"}
CODEC = MessageCodec()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def host(kafka: KafkaSettings, clock: Clock, **settings: int) -> SagaHost:
    return SagaHost(
        kafka,
        range(PARTITIONS),
        PARTITIONS,
        HostSettings(**settings),
        clock=clock,
        start_timers=False,
    )


def start(saga_id: str, offset: int = 0) -> Inbound:
    message = start_message(saga_id, "deposit", INPUT, datetime.now(UTC))
    return ("saga.requests", 0, offset, saga_id, CODEC.encode(message))


def reply(saga_id: str, step_id: str, offset: int, success: bool = True) -> Inbound:
    message = EventMessage(
        message_id=f"r-{saga_id}-{step_id}",
        saga_id=saga_id,
        step_id=step_id,
        timestamp=datetime.now(UTC),
        success=success,
        payload={"paymentId": "p"},
    )
    topic = {"verify_user": "user.events.verify"}.get(step_id, "payment.events.process")
    return (topic, 0, offset, saga_id, CODEC.encode(message))


def commands(kafka: KafkaSettings, topic: str) -> list[CommandMessage]:
    starts = {TopicPartition(topic, p): 0 for p in range(PARTITIONS)}
    found = [CODEC.decode(r.value) for r in read_to_end(kafka, starts)]
    return [c for c in found if isinstance(c, CommandMessage)]


def test_deadlines_survive_a_restart_and_fire_on_the_new_host(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    first = host(kafka, clock)
    first.handle([start("s-1")])
    assert first.fire_timers() == 0
    first.close()  # the host goes away with the saga waiting on verify_user

    clock.now += 11  # past the 10 s reply deadline
    second = host(kafka, clock)
    try:
        # The first tick re-sends the awaited command (same messageId: the log
        # cannot say whether it went out). The deadline passed while the host
        # was down, so it waits a grace period for replies already on the way.
        assert second.fire_timers() == 0
        sent = [c.message_id for c in commands(kafka, "user.commands.verify")]
        assert sent == ["s-1:verify_user:1", "s-1:verify_user:1"]
        clock.now += 5
        assert second.fire_timers() == 1
        state = second.state("s-1")
        assert state is not None and state.retrying
        clock.now += 1  # past the backoff
        assert second.fire_timers() == 1
        sent = [c.message_id for c in commands(kafka, "user.commands.verify")]
        assert sent[-1] == "s-1:verify_user:2"
    finally:
        second.close()


def test_restore_from_snapshot_plus_tail_equals_the_state_before(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    first = host(kafka, clock, snapshot_every=7)
    ids = [f"s-{i}" for i in range(40)]
    offset = 0
    for saga_id in ids:
        first.handle([start(saga_id, offset)])
        offset += 1
    for saga_id in ids[:25]:  # these move on: more log after the snapshots
        first.handle([reply(saga_id, "verify_user", offset)])
        offset += 1
    for saga_id in ids[:5]:  # and these end (rejected)
        first.handle([reply(saga_id, "process_payment", offset, success=False)])
        offset += 1
    before = {i: first.state(i) for i in ids}
    stats = first.stats()
    assert stats.snapshots > 0, "the test needs a snapshot and a tail after it"
    first.close()

    second = host(kafka, clock, snapshot_every=7)
    try:
        after = {i: second.state(i) for i in ids}
        assert after == before
        restored = second.stats()
        assert restored.restored_sagas > 0 and restored.restored_records > 0
        assert restored.finished == 5
        # A late duplicate for a saga that ended is still recognised.
        report = second.handle([reply(ids[0], "verify_user", offset)])
        assert report.duplicates == 1 and report.dead_letters == 0
    finally:
        second.close()


def test_a_snapshot_cut_short_falls_back_to_the_previous_one(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    first = host(kafka, clock)
    first.handle([start(f"s-{i}", i) for i in range(10)])
    first.snapshot()
    first.handle([start(f"t-{i}", 100 + i) for i in range(10)])
    first.close()
    # A writer dying mid-snapshot leaves a chunk and no manifest behind.
    codec = msgspec.json.Encoder()
    with KafkaMessagePublisher(kafka) as publisher:
        for p in range(PARTITIONS):
            chunk = {
                "type": "chunk",
                "format": 1,
                "partition": p,
                "logOffset": 999,
                "index": 0,
                "total": 2,
                "previous": _manifest_offset(kafka, p),
                "sagas": [],
            }
            publisher.publish_raw(SAGA_SNAPSHOTS, "x", codec.encode(chunk), partition=p)
        publisher.flush()

    second = host(kafka, clock)
    try:
        states = [second.state(f"{prefix}-{i}") for prefix in "st" for i in range(10)]
        assert all(
            isinstance(s, SagaState) and s.status is Status.RUNNING for s in states
        )
        assert second.stats().restored_sagas == 10  # from the complete snapshot
    finally:
        second.close()


def _manifest_offset(kafka: KafkaSettings, partition: int) -> int:
    tp = TopicPartition(SAGA_SNAPSHOTS, partition)
    offsets = [
        r.offset for r in read_to_end(kafka, {tp: 0}) if b'"type":"manifest"' in r.value
    ]
    return offsets[-1]


def test_bad_records_are_dead_lettered_and_the_rest_applied(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    saga_host = host(kafka, clock)
    try:
        wrong_home = next(
            f"x-{i}" for i in range(100) if home_partition(f"x-{i}", PARTITIONS) == 1
        )
        report = saga_host.handle(
            [
                ("saga.requests", 0, 0, "k", b"\xff\xfe"),
                start("ok-1", 1),
                (
                    "saga.requests",
                    0,
                    2,
                    "bad-type",
                    CODEC.encode(
                        start_message("bad-type", "withdraw", INPUT, datetime.now(UTC))
                    ),
                ),
                ("saga.requests", 0, 3, wrong_home, start("other")[4]),
                start("ok-2", 4),
            ]
        )
        assert (report.applied, report.dead_letters) == (2, 3)
        assert saga_host.state("ok-1") is not None
        assert saga_host.state("ok-2") is not None
    finally:
        saga_host.close()
