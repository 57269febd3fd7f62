"""Snapshots on ``saga.snapshots`` when the broker's answer gives no offset.

A broker answers a batch it had already (the idempotent producer's retry of a
send whose answer was lost, as a broker paused past the request timeout
makes happen) with success and offset -1. A manifest must say where its first
chunk is: one written with -1 there sent every later restore of its partition
to seek offset -1, and the host that had to restore (any host whose append
went unanswered) failed at every input and timer from then on, its sagas
stalled for good. Real broker; the publisher below stands in only for that
one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

import msgspec
import pytest

from actors.core import SagaState
from actors.engine.snapshots import FORMAT, MAX_PASSED_OVER, SnapshotStore
from actors.errors import SnapshotError
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, Outgoing
from events.wire.topics import SAGA_SNAPSHOTS
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

ENCODE = msgspec.json.Encoder().encode


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(1) as settings:
        yield settings


def sagas(prefix: str, count: int) -> list[SagaState]:
    return [
        SagaState(saga_id=f"{prefix}-{i}", saga_type="deposit", input={"n": i})
        for i in range(count)
    ]


class Unplaced:
    """The real publisher, except that the first record of its next batch is
    answered as a batch the broker had already: offset -1."""

    def __init__(self, publisher: KafkaMessagePublisher) -> None:
        self._publisher = publisher
        self.armed = True

    def send_all(self, records: Iterable[Outgoing]) -> list[Ack]:
        acks = self._publisher.send_all(records)
        if self.armed:
            self.armed = False
            first = acks[0]
            acks[0] = Ack(first.topic, first.partition, -1)
        return acks


def latest(kafka: KafkaSettings, store: SnapshotStore) -> Any:
    with PartitionReader(kafka) as reader:
        return store.latest(reader, [0])[0]


def test_a_chunk_placed_nowhere_gets_no_manifest_and_the_last_snapshot_stands(
    kafka: KafkaSettings,
) -> None:
    with KafkaMessagePublisher(kafka) as publisher:
        good = SnapshotStore(kafka, publisher, chunk_bytes=300, writer="w-1")
        before = good.write(0, 10, sagas("a", 4), ["done-1"], {}, -1, 1)
        unplaced = Unplaced(publisher)
        store = SnapshotStore(kafka, cast(Any, unplaced), chunk_bytes=300, writer="w-1")
        with pytest.raises(SnapshotError, match="did not say: no manifest written"):
            store.write(0, 20, sagas("b", 6), [], {}, before, 1)
        assert not unplaced.armed  # the offset-less answer was given
        found = latest(kafka, good)
    assert (found.log_offset, found.manifest_offset) == (10, before)
    assert [s.saga_id for s in found.sagas] == [f"a-{i}" for i in range(4)]


def test_a_manifest_that_does_not_say_where_its_chunks_start_is_passed_over(
    kafka: KafkaSettings,
) -> None:
    """As a writer before the check left it: the snapshot before it is used
    (and the log from there), not a seek to offset -1."""
    with KafkaMessagePublisher(kafka) as publisher:
        store = SnapshotStore(kafka, publisher, writer="w-1")
        before = store.write(0, 10, sagas("a", 3), [], {}, -1, 2)
        publisher.send_all([raw(chunk_at(20, previous=before))])
        manifest = manifest_at(20, first=-1, previous=before)
        publisher.send_all([raw(manifest)])
        found = latest(kafka, store)
        assert (found.log_offset, found.epoch) == (10, 2)
        assert len(found.sagas) == 3
        # With nothing before it, the log is replayed from its start.
        publisher.send_all([raw(manifest_at(30, first=-1, previous=-1))])
        assert latest(kafka, store).log_offset == 0


def test_past_a_long_run_of_offsetless_manifests_the_log_is_replayed(
    kafka: KafkaSettings,
) -> None:
    """Past MAX_PASSED_OVER of them (or on a chain that never ends) the log is
    replayed from its start rather than sought through for ever."""
    with KafkaMessagePublisher(kafka) as publisher:
        store = SnapshotStore(kafka, publisher, writer="w-1")
        previous = store.write(0, 10, sagas("a", 1), [], {}, -1, 2)
        for _ in range(MAX_PASSED_OVER):
            [ack] = publisher.send_all(
                [raw(manifest_at(20, first=-1, previous=previous))]
            )
            previous = ack.offset
        assert latest(kafka, store).log_offset == 10
        publisher.send_all([raw(manifest_at(20, first=-1, previous=previous))])
        assert latest(kafka, store).log_offset == 0
        # A manifest that points at itself.
        with PartitionReader(kafka) as reader:
            [end] = reader.ends([TP(SAGA_SNAPSHOTS, 0)]).values()
        publisher.send_all([raw(manifest_at(30, first=-1, previous=end))])
        assert latest(kafka, store).log_offset == 0


def test_a_chunk_sent_twice_counts_once(kafka: KafkaSettings) -> None:
    with KafkaMessagePublisher(kafka) as publisher:
        store = SnapshotStore(kafka, publisher, writer="w-1")
        state = sagas("a", 1)[0]
        twice = chunk_at(10, previous=-1, states=[state])
        acks = publisher.send_all([raw(twice), raw(twice)])
        publisher.send_all([raw(manifest_at(10, first=acks[0].offset, previous=-1))])
        found = latest(kafka, store)
    assert found.sagas == [state]


def chunk_at(
    log_offset: int, previous: int, states: list[SagaState] | None = None
) -> dict[str, Any]:
    return {
        "type": "chunk",
        "format": FORMAT,
        "partition": 0,
        "logOffset": log_offset,
        "index": 0,
        "total": 1,
        "previous": previous,
        "writer": "w-old",
        "sagas": [msgspec.to_builtins(s) for s in states or []],
    }


def manifest_at(
    log_offset: int, first: int, previous: int, partition: int = 0
) -> dict[str, Any]:
    """A manifest of one chunk, at ``first`` on ``saga.snapshots``, of the
    writer ``chunk_at`` stands for."""
    return {
        "type": "manifest",
        "format": FORMAT,
        "partition": partition,
        "logOffset": log_offset,
        "firstOffset": first,
        "chunks": 1,
        "sagas": 1,
        "finished": 0,
        "previous": previous,
        "epoch": 3,
        "writer": "w-old",
    }


def raw(record: dict[str, Any]) -> Outgoing:
    """``record`` as a writer sends it to its partition of ``saga.snapshots``."""
    partition = record["partition"]
    return Outgoing(SAGA_SNAPSHOTS, f"partition-{partition}", ENCODE(record), partition)
