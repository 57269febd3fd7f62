"""The long-poll relay: a fetch waiting at the embedded broker is answered
when records arrive, not when the broker looks again (at half its wait)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from events.transport.broker import EmbeddedBroker

#: What the consumer asks the broker to wait. Tansu looks again only after
#: half of it: a record produced meanwhile waits 10 s without the relay.
WAIT_MS = 20_000
#: Long enough for a fetch to be waiting at the broker before the record.
PARKED_MS = 500
#: How long the test waits for the record: well under the broker's look.
PATIENCE_MS = 8_000

TOPIC = "t"


@pytest.fixture(params=[True, False], ids=["relay", "no-relay"])
def broker(request: pytest.FixtureRequest) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(long_poll=request.param) as running:
        admin = KafkaAdminClient(bootstrap_servers=running.bootstrap)
        try:
            admin.create_topics([NewTopic(TOPIC, 3, 1)])
        finally:
            admin.close()
        yield running


def test_a_waiting_fetch_is_answered_when_records_arrive(
    broker: EmbeddedBroker,
) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        fetch_max_wait_ms=WAIT_MS,
        request_timeout_ms=WAIT_MS * 3,
        enable_auto_commit=False,
    )
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        # Its fetch goes out and finds nothing: it waits at the broker.
        assert consumer.poll(timeout_ms=PARKED_MS) == {}
        producer.send(TOPIC, b"record", partition=1).get(timeout=30)
        got = consumer.poll(timeout_ms=PATIENCE_MS)
        values = [r.value for records in got.values() for r in records]
        if broker.long_poll:
            assert values == [b"record"]
        else:
            # The fault the relay is for: the broker sat on the record.
            assert values == []
    finally:
        consumer.close()
        producer.close()


def test_a_fetch_that_nothing_answers_ends_at_its_own_wait() -> None:
    with EmbeddedBroker(long_poll=True) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(TOPIC, 1, 1)])
        admin.close()
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            fetch_max_wait_ms=200,
            request_timeout_ms=30_000,
            enable_auto_commit=False,
        )
        try:
            partition = TopicPartition(TOPIC, 0)
            consumer.assign([partition])
            consumer.seek_to_end(partition)
            # Several empty answers come back: the relay holds none forever.
            for _ in range(5):
                assert consumer.poll(timeout_ms=1_000) == {}
            assert consumer.position(partition) == 0
            # Answered once their wait was over, not held to the request's
            # timeout (and a latency at all: answers did come back).
            fetches = consumer.metrics()["consumer-fetch-manager-metrics"]
            assert 200 <= fetches["fetch-latency-max"] < 10_000
        finally:
            consumer.close()
