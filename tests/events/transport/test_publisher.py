"""KafkaMessagePublisher against the real broker, read back by an independent client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from events.errors import BrokerUnavailableError, MessageTooLargeError, PublishError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker, free_port
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import Ack
from events.wire.latency import Histogram
from events.wire.messages import CommandMessage, EventMessage, Message
from tests.conftest import process_state, settings_for

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def command(saga: str, i: int) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga}:verify:{i}",
        saga_id=saga,
        step_id="verify-user",
        timestamp=NOW,
        target_service="user",
        payload={"userId": f"u-{i}", "amount": 12.5},
        metadata={"attempt": "1"},
    )


def reply(saga: str, i: int) -> EventMessage:
    return EventMessage(
        message_id=f"{saga}:verified:{i}",
        saga_id=saga,
        step_id="verify-user",
        timestamp=NOW,
        success=i % 2 == 0,
        error=None if i % 2 == 0 else "user blocked",
    )


def read_with_confluent(
    bootstrap: str, topics: list[str], partitions: int, count: int
) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"independent-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    # Assigned, not subscribed: reads from the start without a group join.
    consumer.assign(
        [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            for p in range(partitions)
        ]
    )
    records: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None:
                continue
            assert record.error() is None, record.error()
            records.append(record)
    finally:
        consumer.close()
    return records


def test_an_independent_client_reads_sagaid_keys_and_camel_case_json(
    broker: EmbeddedBroker, kafka: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    commands, events = new_topic(partitions=3), new_topic(partitions=3)
    sagas = [f"saga-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    items: list[tuple[str, Message]] = []
    for i, saga in enumerate(sagas):
        items += [(commands, command(saga, i)), (events, reply(saga, i))]
    with KafkaMessagePublisher(kafka) as publisher:
        acks = publisher.publish_batch(items)
    assert [a.topic for a in acks] == [topic for topic, _ in items]

    records = read_with_confluent(broker.bootstrap, [commands, events], 3, len(items))
    assert len(records) == len(items)
    partition_of: dict[tuple[str, str], int] = {}
    for record in records:
        saga = record.key().decode()
        body = json.loads(record.value())
        assert body["sagaId"] == saga
        assert {"messageId", "sagaId", "stepId", "type", "timestamp"} <= set(body)
        if record.topic() == commands:
            assert body["type"] == "command"
            assert body["targetService"] == "user"
            assert body["payload"]["amount"] == 12.5
        else:
            assert body["type"] == "event"
            assert body["success"] is (body["error"] is None)
        partition_of[(record.topic(), saga)] = record.partition()
    # Same key, same partition count: one sagaId lands on one partition number
    # on every topic.
    for saga in sagas:
        assert partition_of[(commands, saga)] == partition_of[(events, saga)]
    assert len({partition_of[(commands, s)] for s in sagas}) > 1


def test_a_batch_is_acknowledged_message_by_message_in_order(
    kafka: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    with KafkaMessagePublisher(kafka) as publisher:
        acks = publisher.publish_batch([(topic, command("s1", i)) for i in range(20)])
    assert acks == [Ack(topic, acks[0].partition, offset) for offset in range(20)]


def test_a_timed_publish_observes_each_send_to_its_acknowledgement(
    kafka: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    acks = Histogram()
    with KafkaMessagePublisher(kafka) as publisher:
        for i in range(5):
            publisher.publish(topic, command("s1", i), timed=acks)
        publisher.publish(topic, command("s1", 5))  # not timed
        publisher.flush()
        counts = acks.counts()
    assert counts.count == 5 and counts.sum_s > 0


def test_oversized_message_is_refused_before_it_is_sent(
    kafka: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    small = settings_for(kafka.servers)
    small = KafkaSettings(
        bootstrap_servers=small.bootstrap_servers, max_message_bytes=300
    )
    big = CommandMessage(
        message_id="m", saga_id="s", step_id="x", timestamp=NOW,
        target_service="user", payload={"blob": "x" * 400},
    )  # fmt: skip
    with KafkaMessagePublisher(small) as publisher:
        with pytest.raises(MessageTooLargeError):
            publisher.publish(topic, big)
        publisher.flush()
    with TopicAdmin(kafka) as admin:
        assert admin.describe([topic])[0].messages == 0


def test_unreachable_broker_is_a_clear_error_within_the_connect_timeout() -> None:
    closed = f"127.0.0.1:{free_port()}"
    settings = KafkaSettings(bootstrap_servers=(closed,), connect_timeout_ms=1_500)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=closed) as caught:
        KafkaMessagePublisher(settings)
    assert time.monotonic() - started < 10
    assert "bootstrap_servers" in str(caught.value)


def test_a_broker_that_stops_answering_fails_every_send_within_the_timeout() -> None:
    with EmbeddedBroker() as own:
        settings = settings_for(own.bootstrap)
        with TopicAdmin(settings) as admin:
            admin.ensure_topics(["frozen.events.test"], partitions=2)
        publisher = KafkaMessagePublisher(settings)
        publisher.publish_batch([("frozen.events.test", command("warm", 0))])
        own.pause()
        try:
            assert process_state(own.pid) == "T"  # the fault really fired
            started = time.monotonic()
            with pytest.raises(PublishError) as caught:
                # Both partitions: two batches at least, and kafka-python's
                # flush waits its timeout for each batch in turn.
                publisher.send_all(
                    publisher.outgoing("frozen.events.test", command("s", i), i % 2)
                    for i in range(6)
                )
            elapsed = time.monotonic() - started
        finally:
            own.resume()
        assert caught.value.failed == 6
        assert all(isinstance(r, BaseException) for r in caught.value.results)
        # delivery_timeout_ms is 6 s in these settings, the flush's limit 5 s
        # more, for all batches together (give or take one slice of its wait):
        # bounded, no hang.
        assert elapsed < 6 + 5 + 0.5
        publisher.close(timeout_s=2)
