"""Row 9 of the fault matrix, its second half: a dead-lettered message, replayed
with `saga dlq replay` once its cause is fixed, completes its saga.

The cause here is a deploy in the wrong order: clients started a saga type
before the hosts knew it. The host dead-letters the start request with the
reason; a host with the new definitions restores, the operator replays the
letter, and the saga runs to completion. The router's hop (topic to host) is
taken by reading the topic: this test is about the host and the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.core import DEFINITIONS, HistoryCodec, SagaCompleted
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from actors.engine.rehearsal import relative_event
from events.transport.partitions import home_partition
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.dead_letters import DeadLetterCodec
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS, SAGA_REQUESTS
from tests.actors.engine.test_host import (
    PARTITIONS,
    Clock,
    _answer,
    commands,
    host,
    start,
)
from tests.conftest import private_kafka
from tests.events.transport.test_dlq import cli

pytestmark = pytest.mark.broker


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def test_a_start_dead_lettered_before_its_type_was_deployed_completes_on_replay(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    old = own(
        SagaHost(kafka, PARTITIONS, definitions={}, clock=clock, start_timers=False),
        range(PARTITIONS),
    )
    try:
        assert old.handle([start("s-1", 41)]).dead_letters == 1
    finally:
        old.close()
    [raw] = read_to_end(kafka, {TP(SAGA_DLQ, p): 0 for p in range(PARTITIONS)})
    letter = DeadLetterCodec().decode(raw.value)
    assert (letter.topic, letter.offset, letter.saga_id) == (SAGA_REQUESTS, 41, "s-1")
    assert "deposit" in letter.error  # the reason names the unknown type

    new = own(
        SagaHost(
            kafka, PARTITIONS, definitions=DEFINITIONS, clock=clock, start_timers=False
        ),
        range(PARTITIONS),
    )
    try:
        code, out, err = cli(
            kafka,
            capsys,
            "dlq",
            "replay",
            f"{raw.partition}:{raw.offset}",
            "--partitions",
            str(PARTITIONS),
        )
        assert code == 0, err
        assert f"-> {SAGA_REQUESTS}" in out
        requests = {TP(SAGA_REQUESTS, p): 0 for p in range(PARTITIONS)}
        [replayed] = read_to_end(kafka, requests)  # what the router would take
        inbound: Inbound = (
            replayed.topic,
            replayed.partition,
            replayed.offset,
            "s-1",
            replayed.value,
        )
        assert new.handle([inbound]).applied == 1
        new.handle(
            [
                _answer("s-1", "verify_user", "user.events.verify", 1),
                _answer("s-1", "process_payment", "payment.events.process", 2),
                _answer("s-1", "deposit", "account.events.deposit", 3),
            ]
        )
        assert new.state("s-1") is None  # ended
    finally:
        new.close()
    log = read_to_end(kafka, {TP(SAGA_EVENTS, home_partition("s-1", PARTITIONS)): 0})
    last = HistoryCodec().decode(list(log)[-1].value)
    assert isinstance(last.events[-1], SagaCompleted)


def test_a_dry_run_of_a_fixed_letter_is_what_the_real_replay_then_logs(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Must hold: `saga dlq replay --dry-run` prints the saga events and
    commands the real replay then logs and sends. A reply that broke the wire
    schema is dead-lettered and holds its saga; its dry run says why it would
    be refused again; the fixed reply's dry run, and then its real replay,
    release the saga through its log."""
    clock = Clock()
    saga_host = own(
        SagaHost(kafka, PARTITIONS, clock=clock, start_timers=False),
        range(PARTITIONS),
    )
    partitions = ("--partitions", str(PARTITIONS))
    home = home_partition("s-2", PARTITIONS)
    try:
        saga_host.handle([start("s-2", 5)])
        good = Inbound(*_answer("s-2", "verify_user", "user.events.verify", 6))
        broken = good.value.replace(b'"success":true', b'"success":"yes"')
        assert broken != good.value
        assert saga_host.handle([good._replace(value=broken)]).dead_letters == 1
        held = saga_host.state("s-2")
        assert held is not None and held.held == "user.events.verify/0/6"
        [raw] = read_to_end(kafka, {TP(SAGA_DLQ, p): 0 for p in range(PARTITIONS)})
        letter_id = f"{raw.partition}:{raw.offset}"
        fixed = tmp_path / "fixed.json"
        fixed.write_bytes(good.value)

        code, out, err = cli(
            kafka, capsys, "dlq", "replay", letter_id, "--dry-run", "--json",
            *partitions,
        )  # fmt: skip
        assert code == 0, err
        [again] = json.loads(out)
        assert (again["through"], again["verdict"]) == ("saga", "refused")
        assert "the replayed message cannot be read" in again["reason"]
        assert "success" in again["reason"]
        code, out, err = cli(
            kafka, capsys, "dlq", "replay", letter_id, "--dry-run", "--json",
            "--payload", str(fixed), *partitions,
        )  # fmt: skip
        assert code == 0, err
        [rehearsal] = json.loads(out)
        assert (rehearsal["statusBefore"], rehearsal["stepBefore"]) == (
            "running",
            "verify_user",
        )
        assert rehearsal["verdict"] == "applied"
        assert [e["type"] for e in rehearsal["events"]] == [
            "hold_released",
            "step_succeeded",
            "step_commanded",
        ]
        # Nothing was sent by the dry runs.
        requests = {TP(SAGA_REQUESTS, home): 0}
        assert list(read_to_end(kafka, requests)) == []

        code, out, err = cli(
            kafka, capsys, "dlq", "replay", letter_id, "--payload", str(fixed),
            *partitions,
        )  # fmt: skip
        assert code == 0, err
        assert f"replayed {letter_id} -> saga.requests/{home}/0" in out
        [release] = read_to_end(kafka, requests)  # what the router would take
        clock.now += 7.0  # later than the rehearsal: times compare as offsets
        applied = saga_host.handle(
            [Inbound(release.topic, release.partition, release.offset, "s-2",
                     release.value)]
        )  # fmt: skip
        assert applied.applied == 1
        released = saga_host.state("s-2")
        assert released is not None and released.step == "process_payment"
        assert not released.held
    finally:
        saga_host.close()
    log = read_to_end(kafka, {TP(SAGA_EVENTS, home): 0})
    last = HistoryCodec().decode(list(log)[-1].value)
    assert [relative_event(e, last.at) for e in last.events] == rehearsal["events"]
    [sent] = [c for c in commands(kafka, "payment.commands.process")]
    [would] = rehearsal["commands"]
    assert would["topic"] == "payment.commands.process"
    assert (would["message"]["messageId"], would["message"]["payload"]) == (
        sent.message_id,
        sent.payload,
    )
    assert would["message"]["metadata"] == sent.metadata


def test_a_held_saga_and_the_replies_it_holds_survive_a_restore(
    kafka: KafkaSettings,
) -> None:
    """Held sagas come back held, from a snapshot and from the log's tail,
    with their held replies in order."""
    clock = Clock()
    first = host(kafka, clock, snapshot_every=3)
    ids = [f"h-{i}" for i in range(6)]
    try:
        for n, saga_id in enumerate(ids):
            first.handle([start(saga_id, n)])
            good = Inbound(*_answer(saga_id, "verify_user", "user.events.verify", n))
            poison = good._replace(value=b"\xff not json", offset=100 + n)
            first.handle([poison, good])
        before = {i: first.state(i) for i in ids}
        assert all(s is not None and s.held and len(s.held_replies) == 1
                   for s in before.values())  # fmt: skip
        assert first.stats().snapshots > 0, "the test needs a snapshot"
    finally:
        first.close()
    second = host(kafka, clock, snapshot_every=3)
    try:
        assert {i: second.state(i) for i in ids} == before
    finally:
        second.close()
