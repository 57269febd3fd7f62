"""A deeply nested command on a real broker: dead-lettered, and the service goes on.

10 KB of brackets used to raise ``RecursionError`` while the listener decoded
the batch, outside every guard: the service thread died silently and the
partition stopped being served.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from events.service import CommandService
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.nesting import MAX_DEPTH
from events.wire.topics import SAGA_DLQ
from tests.conftest import private_kafka
from tests.reading import read

pytestmark = pytest.mark.broker

PARTITIONS = 2
TOPIC = "payment.commands.process"
DEEP = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
CODEC = MessageCodec()


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def answer(commands: Sequence[CommandMessage]) -> list[EventMessage]:
    return [
        EventMessage(
            message_id=f"{c.message_id}:reply",
            saga_id=c.saga_id,
            step_id=c.step_id,
            timestamp=datetime.now(UTC),
            success=True,
        )
        for c in commands
    ]


def command(saga_id: str) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga_id}:process_payment:1",
        saga_id=saga_id,
        step_id="process_payment",
        timestamp=datetime.now(UTC),
        target_service="payment",
        payload={"userId": "u-1", "amount": 5},
    )


def wait_for(ready: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_deep_commands_keyed_and_unkeyed_are_dead_lettered_and_the_next_answered(
    kafka: KafkaSettings,
) -> None:
    service = CommandService(
        kafka, "payment-service", [TOPIC], answer, group_id=f"g-{uuid.uuid4().hex[:8]}"
    )
    thread = threading.Thread(target=service.run, name="payment-service")
    thread.start()
    try:
        with KafkaMessagePublisher(kafka) as publisher:
            # Both on partition 0, ahead of the valid command behind them.
            publisher.publish_raw(TOPIC, None, DEEP, partition=0)
            publisher.publish_raw(TOPIC, "s-deep", DEEP, partition=0)
            publisher.publish(TOPIC, command("s-after"), partition=0)
            publisher.flush()
        wait_for(lambda: service.stats().replies == 1, "the reply")
        assert thread.is_alive()
    finally:
        service.stop()
        thread.join(timeout=30)
        service.close()
    assert not thread.is_alive()
    codec = DeadLetterCodec()
    letters: list[DeadLetter] = sorted(
        (codec.decode(v) for v in read(kafka, SAGA_DLQ)), key=lambda d: d.offset
    )
    assert [(d.topic, d.partition, d.offset) for d in letters] == [
        (TOPIC, 0, 0),
        (TOPIC, 0, 1),
    ]
    assert [d.key for d in letters] == [None, "s-deep"]
    assert [d.saga_id for d in letters] == [None, "s-deep"]
    for letter in letters:
        assert "nesting depth 5001" in letter.error
        assert f"limit of {MAX_DEPTH} levels" in letter.error
        assert letter.payload == DEEP and letter.source == "payment-service"
    [reply] = [CODEC.decode(v) for v in read(kafka, "payment.events.process")]
    assert reply.saga_id == "s-after" and reply.success
