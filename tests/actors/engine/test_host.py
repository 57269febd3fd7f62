"""SagaHost in-process on the real broker: durable timers, snapshots, restore.

No Ray here: the host is a plain class that :mod:`actors.runtime` wraps, so
these tests drive it directly with a clock they control.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest

from actors.core import (
    DEPOSIT,
    HistoryCodec,
    SagaDefinition,
    SagaFailed,
    SagaState,
    Status,
    Step,
    start_message,
)
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from actors.engine.settings import HostSettings
from actors.errors import HostUnavailableError
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.dead_letters import DeadLetterCodec
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import SAGA_DLQ, SAGA_SNAPSHOTS
from tests.conftest import private_broker, private_kafka

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
    return own(
        SagaHost(
            kafka, PARTITIONS, HostSettings(**settings), clock=clock, start_timers=False
        ),
        range(PARTITIONS),
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
    starts = {TP(topic, p): 0 for p in range(PARTITIONS)}
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
    finally:
        # Closing flushes the producer. The retry's command is queued, not
        # yet sent (linger_ms): a read before the flush raced the producer's
        # linger timer against the reader's first fetch, and lost whenever the
        # reader was the faster (issue 10, item 9).
        second.close()
    sent = [c.message_id for c in commands(kafka, "user.commands.verify")]
    assert sent[-1] == "s-1:verify_user:2"


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
    tp = TP(SAGA_SNAPSHOTS, partition)
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
        # One batch decided and appended: each timed once.
        hops = saga_host.metrics().hops
        assert hops["host_decide"].count == 1 and hops["log_append"].count == 1
    finally:
        saga_host.close()


def _answer(
    saga_id: str, step_id: str, topic: str, offset: int, success: bool = True
) -> Inbound:
    message = EventMessage(
        message_id=f"r-{saga_id}-{step_id}-{offset}",
        saga_id=saga_id,
        step_id=step_id,
        timestamp=datetime.now(UTC),
        success=success,
        payload={"paymentId": f"pay-{saga_id}"},
        error=None if success else "refused",
    )
    return (topic, 0, offset, saga_id, CODEC.encode(message))


def test_a_compensation_refused_to_its_last_attempt_fails_the_saga_with_a_letter(
    kafka: KafkaSettings,
) -> None:
    """Row 11 of the fault matrix: the refund keeps being refused; the saga
    ends failed, and a dead letter says so, naming what a person must settle."""
    clock = Clock()
    saga_host = host(kafka, clock)
    try:
        saga_host.handle(
            [
                start("s-1"),
                _answer("s-1", "verify_user", "user.events.verify", 1),
                _answer("s-1", "process_payment", "payment.events.process", 2),
                _answer("s-1", "deposit", "account.events.deposit", 3, success=False),
            ]
        )
        state = saga_host.state("s-1")
        assert state is not None and state.compensating
        for offset in (4, 5, 6):  # each attempt of the refund refused
            refund = "process_payment.compensate"
            saga_host.handle(
                [_answer("s-1", refund, "payment.events.refund", offset, False)]
            )
            clock.now += 120  # past the backoff: the next attempt goes out
            saga_host.fire_timers()
        # Ended failed, and parked where an operator's retry finds it.
        ended = saga_host.state("s-1")
        assert ended is not None and ended.status is Status.FAILED
        assert saga_host.stats().in_flight == 0
    finally:
        saga_host.close()
    letters = [
        DeadLetterCodec().decode(r.value)
        for r in read_to_end(kafka, {TP(SAGA_DLQ, p): 0 for p in range(PARTITIONS)})
    ]
    assert [(x.saga_id, x.topic, x.source) for x in letters] == [
        ("s-1", "saga.events", "saga-host")
    ]
    assert "saga s-1 failed" in letters[0].error
    assert "settle it by hand" in letters[0].error
    log = read_to_end(kafka, {TP("saga.events", home_partition("s-1", PARTITIONS)): 0})
    last = HistoryCodec().decode(list(log)[-1].value)
    assert isinstance(last.events[-1], SagaFailed)


def test_a_late_success_after_a_doubtful_step_was_compensated_is_dead_lettered(
    kafka: KafkaSettings,
) -> None:
    """The payment went unanswered to its last attempt and was refunded; its
    success arriving after the saga ended is reported once (a dead letter
    naming it, a counter) and its copies are duplicates. The step stays in the
    ended saga's books through a restore from the log and a snapshot."""
    clock = Clock()
    late = _answer("s-1", "process_payment", "payment.events.process", 90)
    first = host(kafka, clock)
    first.handle([start("s-1"), _answer("s-1", "verify_user", "user.events.verify", 1)])
    for _ in range(6):  # three attempts of the payment, each timing out
        clock.now += 60
        first.fire_timers()
    state = first.state("s-1")
    assert state is not None and state.compensating
    assert state.doubtful == "process_payment"
    refund = _answer("s-1", "process_payment.compensate", "payment.events.refund", 2)
    first.handle([refund])
    assert first.state("s-1") is None  # compensated: it left memory
    first.close()

    replayed = host(kafka, clock)  # the books from the log
    replayed.snapshot()
    replayed.close()
    restored = host(kafka, clock)  # and from the snapshot alone
    try:
        assert restored.stats().restored_records == 0
        report = restored.handle([late, late])
        assert (report.late_replies, report.dead_letters) == (1, 1)
        assert report.duplicates == 1
        assert restored.handle([late]).duplicates == 1
        assert restored.stats().late_replies == 1
    finally:
        restored.close()
    letters = [
        DeadLetterCodec().decode(r.value)
        for r in read_to_end(kafka, {TP(SAGA_DLQ, p): 0 for p in range(2)})
    ]
    assert len(letters) == 1
    assert "late success of step 'process_payment'" in letters[0].error


class _BrokenOnTimeout(SagaDefinition, frozen=True):
    """A definition with a bug that shows only when a deadline passes."""

    def step(self, name: str) -> Step:
        raise RuntimeError(f"bug looking up {name}")


def test_a_deadline_whose_decision_raises_is_dead_lettered_not_dropped(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    broken = msgspec.convert(msgspec.to_builtins(DEPOSIT), _BrokenOnTimeout)
    saga_host = own(
        SagaHost(
            kafka,
            PARTITIONS,
            HostSettings(),
            {"deposit": broken},
            clock=clock,
            start_timers=False,
        ),
        range(PARTITIONS),
    )
    try:
        saga_host.handle([start("s-1")])
        clock.now += 11
        assert saga_host.fire_timers() == 0
        assert saga_host.stats().dead_letters == 1
    finally:
        saga_host.close()
    tps = {TP(SAGA_DLQ, p): 0 for p in range(PARTITIONS)}
    [letter] = [DeadLetterCodec().decode(r.value) for r in read_to_end(kafka, tps)]
    assert letter.topic == "saga.events" and letter.saga_id == "s-1"
    assert "deadline of saga s-1" in letter.error and "bug looking up" in letter.error
    assert msgspec.json.decode(letter.payload)["step"] == "verify_user"


def test_an_input_too_big_for_the_log_is_dead_lettered_before_it_is_appended() -> None:
    """The log wraps what a message carried: capped at half the record limit,
    so an append can never be one the broker always refuses."""
    with private_kafka(PARTITIONS, max_message_bytes=64 * 1024) as small:
        saga_host = own(
            SagaHost(small, PARTITIONS, HostSettings(), start_timers=False),
            range(PARTITIONS),
        )
        try:
            big = {**INPUT, "note": "x" * 40_000}  # fits a message, not the cap
            message = start_message("s-big", "deposit", big, datetime.now(UTC))
            inbound = ("saga.requests", 0, 0, "s-big", CODEC.encode(message))
            report = saga_host.handle([inbound, start("s-ok", 1)])
            assert (report.applied, report.dead_letters) == (1, 1)
            assert saga_host.state("s-big") is None
        finally:
            saga_host.close()
        tps = {TP(SAGA_DLQ, p): 0 for p in range(PARTITIONS)}
        [letter] = [DeadLetterCodec().decode(r.value) for r in read_to_end(small, tps)]
        assert "over the cap of 32,768" in letter.error


def test_appends_lost_to_a_paused_broker_leave_a_host_that_recovers() -> None:
    """Appends that expire mark memory stale and the producer spent: the next
    batch rebuilds both from the log, and the host carries on."""
    producer = {"delivery_timeout_ms": 2_000, "request_timeout_ms": 1_000}
    with private_broker(PARTITIONS, producer=producer) as (broker, kafka):
        saga_host = host(kafka, Clock())
        try:
            assert saga_host.handle([start("s-1")]).applied == 1
            broker.pause()
            try:
                with pytest.raises(HostUnavailableError):
                    saga_host.handle([start("s-2", 1)])
            finally:
                broker.resume()
            assert saga_host.state("s-2") is None  # nothing of the batch applied
            # The append's outcome was unknown: it may have landed after all.
            # Sent again, the start is applied, or known from the log.
            again = saga_host.handle([start("s-2", 1)])
            assert again.applied + again.duplicates == 1
            assert saga_host.handle([start("s-3", 2)]).applied == 1
            assert all(saga_host.state(f"s-{i}") is not None for i in (1, 2, 3))
        finally:
            saga_host.close()
        starts = {TP("saga.events", p): 0 for p in range(PARTITIONS)}
        firsts = [r.key for r in read_to_end(kafka, starts) if b'"seq":1,' in r.value]
        assert sorted(firsts) == [b"s-1", b"s-2", b"s-3"]


def test_a_late_success_while_compensating_is_reported_once(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    late = _answer("s-1", "process_payment", "payment.events.process", 90)
    saga_host = host(kafka, clock)
    try:
        saga_host.handle(
            [start("s-1"), _answer("s-1", "verify_user", "user.events.verify", 1)]
        )
        for _ in range(6):  # three attempts of the payment, each timing out
            clock.now += 60
            saga_host.fire_timers()
        state = saga_host.state("s-1")
        assert state is not None and state.compensating  # the refund is out
        first = saga_host.handle([late])
        assert (first.late_replies, first.dead_letters) == (1, 1)
        assert saga_host.handle([late]).duplicates == 1  # attempt 2's copy
        refund = _answer(
            "s-1", "process_payment.compensate", "payment.events.refund", 2
        )
        saga_host.handle([refund])
        assert saga_host.state("s-1") is None
        assert saga_host.handle([late]).duplicates == 1  # attempt 3's, after
        assert saga_host.stats().late_replies == 1
    finally:
        saga_host.close()
