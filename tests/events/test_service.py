"""``CommandService``: where replies may go, and the breaker for a handler that
reports itself unavailable.

Each test runs on a private broker (empty logs, its own groups); the handlers
are plain functions, so what the service does is all there is to see.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from events.errors import ServiceUnavailableError
from events.service import CommandService, RetrySettings
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS, SAGA_REQUESTS, SAGA_SNAPSHOTS
from tests.reading import letters, read, replies

pytestmark = pytest.mark.broker

TOPIC = "user.commands.verify"
TWIN = "user.events.verify"
CODEC = MessageCodec()


def command(saga_id: str, reply_topic: str | None = None) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga_id}:verify_user:1",
        saga_id=saga_id,
        step_id="verify_user",
        timestamp=datetime.now(UTC),
        target_service="user",
        metadata={} if reply_topic is None else {"replyTopic": reply_topic},
    )


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


def send(kafka: KafkaSettings, commands: list[CommandMessage]) -> None:
    with KafkaMessagePublisher(kafka) as publisher:
        for c in commands:
            publisher.publish(TOPIC, c)
        publisher.flush()


def drive(service: CommandService, until: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        service.poll_once()


def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def test_replies_go_only_to_the_events_twin_or_the_allow_list(
    service_kafka: KafkaSettings,
) -> None:
    allowed = "payment.events.refund"
    forbidden = [SAGA_EVENTS, SAGA_SNAPSHOTS, SAGA_DLQ, SAGA_REQUESTS]
    commands = [
        command("plain"),
        command("twin", TWIN),
        command("listed", allowed),
        command("other-service", "payment.events.process"),
        *(command(f"saga-{i}", topic) for i, topic in enumerate(forbidden)),
    ]
    send(service_kafka, commands)
    seen: list[str] = []

    def handler(batch: Sequence[CommandMessage]) -> list[EventMessage]:
        seen.extend(c.saga_id for c in batch)
        return answer(batch)

    with CommandService(
        service_kafka,
        "verifier",
        [TOPIC],
        handler,
        group_id=group(),
        reply_topics=[allowed],
    ) as service:
        drive(service, lambda: service.stats().handled == len(commands))
        stats = service.stats()
    # A refused command is not handled: no effect for a reply that can't go out.
    assert sorted(seen) == ["listed", "plain", "twin"]
    assert {r.saga_id for r in replies(service_kafka, TWIN)} == {"plain", "twin"}
    [listed] = replies(service_kafka, allowed)
    assert listed.saga_id == "listed" and listed.command_id == "listed:verify_user:1"
    assert all(r.command_id for r in replies(service_kafka, TWIN))
    for topic in (SAGA_EVENTS, SAGA_SNAPSHOTS, SAGA_REQUESTS, "payment.events.process"):
        assert read(service_kafka, topic) == [], topic
    dead = {d.saga_id: d for d in letters(service_kafka)}
    assert set(dead) == {"other-service"} | {f"saga-{i}" for i in range(4)}
    for i, topic in enumerate(forbidden):
        reason = dead[f"saga-{i}"].error
        assert f"replyTopic {topic!r} refused" in reason
        assert f"events twin ({TWIN})" in reason and allowed in reason
    assert "'payment.events.process' refused" in dead["other-service"].error
    assert stats.dead_letters == 5 and stats.replies == 3
    assert SAGA_EVENTS not in stats.produced
    # Its hops timed: every command's wait for its batch, and each batch's
    # handler and sends.
    hops = stats.hops
    assert hops["participant_poll"].count >= len(commands)
    assert hops["duckdb_commit"].count >= 1 and hops["reply_publish"].count >= 1


def test_the_allow_list_takes_only_service_events_topics(
    service_kafka: KafkaSettings,
) -> None:
    for topic in (SAGA_EVENTS, SAGA_DLQ, "user.commands.verify", "nonsense"):
        with pytest.raises(ValueError, match="only service events topics"):
            CommandService(
                service_kafka,
                "x",
                [TOPIC],
                answer,
                group_id=group(),
                reply_topics=[topic],
            )


def test_an_unavailable_handler_pauses_the_batch_and_dead_letters_nothing(
    service_kafka: KafkaSettings,
) -> None:
    commands = [command(f"s-{i}") for i in range(6)]
    send(service_kafka, commands)
    calls: list[int] = []
    breaker: list[bool] = []

    def handler(batch: Sequence[CommandMessage]) -> list[EventMessage]:
        calls.append(len(batch))
        if len(calls) <= 3:
            raise ServiceUnavailableError("the disk is gone for a moment")
        return answer(batch)

    retry = RetrySettings(unavailable_initial_ms=100, unavailable_max_ms=400)
    with CommandService(
        service_kafka, "verifier", [TOPIC], handler, group_id=group(), retry=retry
    ) as service:

        def answered() -> bool:
            breaker.append(service.stats().breaker_open)
            return service.stats().replies == len(commands)

        started = time.monotonic()
        drive(service, answered)
        elapsed = time.monotonic() - started
        stats = service.stats()
    assert letters(service_kafka) == []
    got = replies(service_kafka, TWIN)
    assert sorted(r.command_id or "" for r in got) == sorted(
        c.message_id for c in commands
    )
    # Three batches put back, none retried command by command (no retries),
    # and the pauses (jittered, 50-100, 100-200, 200-400 ms) really waited.
    assert stats.unavailable == 3 and stats.retries == 0 and stats.dead_letters == 0
    assert True in breaker and not stats.breaker_open
    assert elapsed >= 0.35


def test_stop_cuts_a_breaker_pause_short(service_kafka: KafkaSettings) -> None:
    send(service_kafka, [command("s-1")])
    raised: list[float] = []
    service: CommandService

    def handler(batch: Sequence[CommandMessage]) -> list[EventMessage]:
        # Stop while the service is in its minute-long pause.
        raised.append(time.monotonic())
        threading.Timer(0.5, service.stop).start()
        raise ServiceUnavailableError("down")

    retry = RetrySettings(unavailable_initial_ms=60_000, jitter=0.0)
    with CommandService(
        service_kafka, "verifier", [TOPIC], handler, group_id=group(), retry=retry
    ) as service:
        drive(service, lambda: service.stats().unavailable == 1)
        paused = time.monotonic() - raised[0]
        assert service.stats().breaker_open
    assert 0.4 < paused < 10
    assert letters(service_kafka) == [] and replies(service_kafka, TWIN) == []
