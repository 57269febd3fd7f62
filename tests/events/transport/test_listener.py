"""KafkaEventListener: manual commits of exactly what the handler reports done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest
from kafka import KafkaAdminClient, TopicPartition

from events.errors import NotJsonError
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import Outgoing
from tests.events.transport.test_publisher import reply


def publish(kafka: KafkaSettings, topic: str, count: int, saga: str = "s") -> None:
    with KafkaMessagePublisher(kafka) as publisher:
        publisher.publish_batch((topic, reply(saga, i)) for i in range(count))


def committed(kafka: KafkaSettings, group: str, topic: str) -> int | None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.servers)
    try:
        offsets = admin.list_group_offsets(group)
    finally:
        admin.close()
    found = offsets.get(group, {}).get(TopicPartition(topic, 0))
    return None if found is None else int(found.offset)


def drain(listener: KafkaEventListener, want: int, polls: int = 100) -> None:
    for _ in range(polls):
        if listener.handled >= want:
            return
        listener.poll_once()
    raise AssertionError(f"handled {listener.handled} of {want}")


def test_commits_up_to_the_first_record_not_done_and_redelivers_from_it(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic()
    sent_ms = time.time() * 1000
    publish(kafka, topic, 10)
    seen: list[list[int]] = []
    stamps: list[int] = []

    def handler(batch: Sequence[Delivery]) -> list[Delivery]:
        seen.append([d.offset for d in batch])
        stamps.extend(d.timestamp for d in batch)
        if len(seen) == 1:
            # Offset 6 onwards is done but 5 is not: the commit stops at 5.
            return [d for d in batch if d.offset != 5]
        return list(batch)

    with KafkaEventListener(kafka, [topic], handler, group_id=group_id) as listener:
        listener.wait_for_assignment()
        drain(listener, 9)
        assert seen == [list(range(10))]
        assert committed(kafka, group_id, topic) == 5
        # The partition was rewound: 5 comes back, and what followed it.
        drain(listener, 9 + 5)
        assert seen[1] == list(range(5, 10))
        assert committed(kafka, group_id, topic) == 10
    # Each delivery carries its record's Kafka timestamp (the producer's
    # clock, in ms, when it was handed the record).
    assert all(sent_ms - 1 <= t <= time.time() * 1000 for t in stamps), stamps


def test_a_new_member_resumes_from_the_committed_offset(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic()
    publish(kafka, topic, 10)
    with KafkaEventListener(
        kafka, [topic], lambda b: [d for d in b if d.offset < 4], group_id=group_id
    ) as first:
        first.wait_for_assignment()
        drain(first, 4)
    assert committed(kafka, group_id, topic) == 4
    got: list[int] = []

    def take_all(batch: Sequence[Delivery]) -> Sequence[Delivery]:
        got.extend(d.offset for d in batch)
        return batch

    with KafkaEventListener(kafka, [topic], take_all, group_id=group_id) as second:
        second.wait_for_assignment()
        drain(second, 6)
    assert got == list(range(4, 10))
    assert committed(kafka, group_id, topic) == 10


def test_a_member_keeping_its_own_positions_starts_there_whatever_was_committed(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    """The projection writer on a node it moved to, with a new, empty DuckDB
    file: the group committed 10, its own record says 0, and 0 it is."""
    topic = new_topic()
    publish(kafka, topic, 10)
    with KafkaEventListener(kafka, [topic], list, group_id=group_id) as first:
        first.wait_for_assignment()
        drain(first, 10)
    assert committed(kafka, group_id, topic) == 10
    for own, expected in ((True, list(range(10))), (False, [])):
        got: list[int] = []

        def take_all(
            batch: Sequence[Delivery], got: list[int] = got
        ) -> Sequence[Delivery]:
            got.extend(d.offset for d in batch)
            return batch

        with KafkaEventListener(
            kafka,
            [topic],
            take_all,
            group_id=group_id,
            start_at=lambda tps: dict.fromkeys(tps, 0),
            own_positions=own,
        ) as member:
            member.wait_for_assignment()
            for _ in range(20):
                member.poll_once(timeout_ms=100)
        assert got == expected, f"own_positions={own}"


def test_a_failing_handler_commits_nothing_and_loses_nothing(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic()
    publish(kafka, topic, 5)
    calls: list[list[int]] = []

    def flaky(batch: Sequence[Delivery]) -> Sequence[Delivery]:
        calls.append([d.offset for d in batch])
        if len(calls) == 1:
            raise RuntimeError("handler crashed")
        return batch

    with KafkaEventListener(kafka, [topic], flaky, group_id=group_id) as listener:
        with pytest.raises(RuntimeError, match="handler crashed"):
            for _ in range(100):
                listener.poll_once()
        assert committed(kafka, group_id, topic) is None
        drain(listener, 5)
    assert calls[0] == list(range(5))
    assert sorted({o for call in calls[1:] for o in call}) == list(range(5))
    assert committed(kafka, group_id, topic) == 5


def test_undecodable_records_arrive_with_their_error_and_raw_bytes(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic()
    with KafkaMessagePublisher(kafka) as publisher:
        # One at a time, acknowledged: the three land in this order.
        publisher.publish_batch([(topic, reply("s", 0))])
        publisher.send_all([Outgoing(topic, "s", b"\x00garbage")])
        publisher.publish_batch([(topic, reply("s", 2))])
    got: list[Delivery] = []

    def keep(batch: Sequence[Delivery]) -> Sequence[Delivery]:
        got.extend(batch)
        return batch

    with KafkaEventListener(kafka, [topic], keep, group_id=group_id) as listener:
        listener.wait_for_assignment()
        drain(listener, 3)
    good, bad, after = got
    assert good.message is not None and good.error is None and good.key == "s"
    assert bad.message is None and isinstance(bad.error, NotJsonError)
    assert bad.value == b"\x00garbage" and bad.error.raw == b"\x00garbage"
    assert after.message is not None and after.message.message_id == "s:verified:2"


def test_shutdown_commits_only_what_was_handled(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic()
    publish(kafka, topic, 30)
    handled: list[int] = []
    listener: KafkaEventListener

    def slow(batch: Sequence[Delivery]) -> list[Delivery]:
        # Handle one record per poll, then ask to stop mid-stream.
        handled.append(batch[0].offset)
        if len(handled) == 7:
            listener.stop()
        return [batch[0]]

    listener = KafkaEventListener(kafka, [topic], slow, group_id=group_id)
    runner = threading.Thread(target=listener.run)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive()
    listener.close()
    assert handled == list(range(7))
    assert committed(kafka, group_id, topic) == 7


def publish_spread(kafka: KafkaSettings, topic: str, sagas: str, count: int) -> None:
    """``count`` replies of sagas ``<sagas>0``, ``<sagas>1``...: over partitions."""
    with KafkaMessagePublisher(kafka) as publisher:
        publisher.publish_batch((topic, reply(f"{sagas}{i}", i)) for i in range(count))


def test_gathering_makes_one_batch_of_records_sent_apart(
    kafka: KafkaSettings, new_topic: Callable[..., str], group_id: str
) -> None:
    """Records that arrive within the window after the first make one batch, in
    order per partition, handled and committed once; the window ends a batch
    short of its count."""
    topic = new_topic(partitions=2)
    batches: list[list[tuple[int, int]]] = []

    def handler(batch: Sequence[Delivery]) -> list[Delivery]:
        batches.append([(d.partition, d.offset) for d in batch])
        return list(batch)

    def listener(gather_ms: int, gather_records: int) -> KafkaEventListener:
        return KafkaEventListener(
            kafka,
            [topic],
            handler,
            group_id=group_id,
            gather_ms=gather_ms,
            gather_records=gather_records,
        )

    with listener(gather_ms=10_000, gather_records=20) as gathering:
        gathering.wait_for_assignment()
        publish_spread(kafka, topic, "a", 10)
        # The second ten come half a second later: a batch without gathering
        # would hold the first ten only.
        later = threading.Timer(0.5, publish_spread, (kafka, topic, "b", 10))
        later.start()
        try:
            gathering.poll_once()
        finally:
            later.join()
    assert [len(b) for b in batches] == [20]
    for partition in (0, 1):
        offsets = [o for p, o in batches[0] if p == partition]
        assert offsets == list(range(len(offsets))) and offsets
    with listener(gather_ms=200, gather_records=10_000) as windowed:
        publish_spread(kafka, topic, "c", 3)
        drain(windowed, 3)
    assert [len(b) for b in batches] == [20, 3]
    assert committed_total(kafka, group_id, topic, partitions=2) == 23


def committed_total(
    kafka: KafkaSettings, group: str, topic: str, partitions: int
) -> int:
    admin = KafkaAdminClient(bootstrap_servers=kafka.servers)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(
        int(offsets[TopicPartition(topic, p)].offset)
        for p in range(partitions)
        if TopicPartition(topic, p) in offsets
    )
