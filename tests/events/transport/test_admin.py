"""Provisioning and inspection against the real embedded broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from events.errors import EventsError, MissingTopicError, TopicPartitionMismatchError
from events.transport.admin import TopicAdmin
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.messages import EventMessage


def _names(count: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"p{tag}.commands.a{i}" for i in range(count)]


def test_provisioning_creates_what_is_missing_and_is_safe_to_repeat(
    kafka: KafkaSettings,
) -> None:
    names = _names(3)
    with TopicAdmin(kafka) as admin:
        first = admin.ensure_topics(names[:2], partitions=3)
        assert set(first.created) == set(names[:2])
        second = admin.ensure_topics(names, partitions=3)
        assert second.created == (names[2],)
        assert set(second.existing) == set(names[:2])
        again = admin.ensure_topics(names, partitions=3)
        assert again.created == ()
        counts = admin.partition_counts()
        assert [counts[n] for n in names] == [3, 3, 3]
        admin.check_topics(names, partitions=3)


def test_partition_count_mismatch_is_an_error_and_creates_nothing(
    kafka: KafkaSettings,
) -> None:
    existing, fresh = _names(2)
    with TopicAdmin(kafka) as admin:
        admin.ensure_topics([existing], partitions=2)
        with pytest.raises(TopicPartitionMismatchError) as caught:
            admin.ensure_topics([existing, fresh], partitions=4)
        assert caught.value.mismatches == {existing: (2, 4)}
        assert "kafka.topics.partitions" in str(caught.value)
        assert fresh not in admin.partition_counts()
        with pytest.raises(TopicPartitionMismatchError):
            admin.check_topics([existing], partitions=4)
        with pytest.raises(MissingTopicError, match=fresh):
            admin.check_topics([existing, fresh], partitions=2)


def test_end_offsets_count_every_record(
    kafka: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    now = datetime.now(UTC)
    with KafkaMessagePublisher(kafka) as publisher:
        acks = publisher.publish_batch(
            (
                topic,
                EventMessage(
                    message_id=f"m{i}", saga_id=f"s{i % 7}", step_id="x",
                    timestamp=now, success=True,
                ),
            )
            for i in range(250)
        )  # fmt: skip
    written = [0, 0]
    for ack in acks:
        written[ack.partition] += 1
    with TopicAdmin(kafka) as admin:
        [info] = admin.describe([topic])
    assert info.partitions == 2
    # One batch per partition: the embedded broker's ListOffsets would say 1.
    assert list(info.end_offsets) == written
    assert info.messages == 250


def test_publishing_to_a_missing_topic_fails_and_creates_nothing(
    kafka: KafkaSettings,
) -> None:
    [missing] = _names(1)
    now = datetime.now(UTC)
    message = EventMessage(
        message_id="m", saga_id="s", step_id="x", timestamp=now, success=True
    )
    with KafkaMessagePublisher(kafka) as publisher, pytest.raises(EventsError):
        publisher.publish(missing, message)
    with TopicAdmin(kafka) as admin:
        assert missing not in admin.partition_counts()
        with pytest.raises(MissingTopicError):
            admin.describe([missing])


def test_lag_of_a_group_that_never_committed_counts_from_the_log_start(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    """A group listed with the topics it reads: where it committed, lag from
    its offset; where it never did (a service that never started), lag from
    the log's start, and ``committed`` says so. Nothing is left out."""
    topic = new_topic(partitions=2)
    now = datetime.now(UTC)
    with KafkaMessagePublisher(kafka) as publisher:
        acks = publisher.publish_batch(
            (
                topic,
                EventMessage(
                    message_id=f"m{i}", saga_id=f"s{i % 7}", step_id="x",
                    timestamp=now, success=True,
                ),
            )
            for i in range(60)
        )  # fmt: skip
    ends = [sum(1 for a in acks if a.partition == p) for p in (0, 1)]
    assert all(ends)
    consumer = KafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        group_id=group_id,
        enable_auto_commit=False,
    )
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    finally:
        consumer.close()
    never = f"{group_id}-never"
    with TopicAdmin(kafka) as admin:
        lags = admin.consumer_lag({group_id: [topic], never: [topic]})
    assert [(x.group, x.partition, x.committed, x.end, x.lag) for x in lags] == [
        (group_id, 0, 3, ends[0], ends[0] - 3),
        (group_id, 1, None, ends[1], ends[1]),
        (never, 0, None, ends[0], ends[0]),
        (never, 1, None, ends[1], ends[1]),
    ]
