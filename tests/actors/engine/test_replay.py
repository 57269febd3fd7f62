"""Row 9 of the fault matrix, its second half: a dead-lettered message, replayed
with `saga dlq replay` once its cause is fixed, completes its saga.

The cause here is a deploy in the wrong order: clients started a saga type
before the hosts knew it. The host dead-letters the start request with the
reason; a host with the new definitions restores, the operator replays the
letter, and the saga runs to completion. The router's hop (topic to host) is
taken by reading the topic: this test is about the host and the DLQ.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.core import DEFINITIONS, HistoryCodec, SagaCompleted
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from events.transport.partitions import home_partition
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.dead_letters import DeadLetterCodec
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS, SAGA_REQUESTS
from tests.actors.engine.test_host import PARTITIONS, Clock, _answer, start
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
