"""What retention may take from the saga log, and what stops a host.

A log configured to delete records (a time or size bound) is refused at start.
Deleted anyway (a retention set later, DeleteRecords), the records of
``saga.events`` that a snapshot covers may go: a restore reads from the
snapshot's offset on. Once one the snapshot does not cover is gone, a restore
would rebuild sagas without part of their history, so the host stops with what
was lost instead. The embedded broker keeps every record; the relay of
:mod:`tests.events.transport.retention` answers as a broker whose retention
deleted them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from actors.engine.host import SagaHost
from events.errors import LogLostError, TopicConfigError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import ALL_TOPICS, SAGA_EVENTS
from tests.actors.engine.test_host import PARTITIONS, Clock, host, start
from tests.conftest import platform_settings
from tests.events.transport.retention import WEEK_MS, Retention, create_bounded

pytestmark = pytest.mark.broker


@pytest.fixture
def relay() -> Iterator[tuple[Retention, KafkaSettings]]:
    """The retention relay, every platform topic created through it, and its
    settings."""
    with Retention() as relay:
        kafka = platform_settings(relay.bootstrap, PARTITIONS)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
        yield relay, kafka


def snapshotted(kafka: KafkaSettings, clock: Clock) -> tuple[SagaHost, dict[TP, int]]:
    """A host with sagas before and after its snapshot, and where the
    snapshot's log ends (the restore point) per partition."""
    first = host(kafka, clock)
    first.handle([start(f"s-{i}", i) for i in range(10)])
    first.snapshot()
    with PartitionReader(kafka) as reader:
        points = reader.ends([TP(SAGA_EVENTS, p) for p in range(PARTITIONS)])
    first.handle([start(f"t-{i}", 100 + i) for i in range(10)])
    return first, points


def test_retention_up_to_the_restore_point_loses_nothing(
    relay: tuple[Retention, KafkaSettings],
) -> None:
    (retention, kafka), clock = relay, Clock()
    first, points = snapshotted(kafka, clock)
    ids = [f"{prefix}-{i}" for prefix in "st" for i in range(10)]
    before = {i: first.state(i) for i in ids}
    first.close()
    for tp, offset in points.items():
        retention.delete_before(tp.topic, tp.partition, offset)
    second = host(kafka, clock)
    try:
        assert {i: second.state(i) for i in ids} == before
        assert second.stats().restored_sagas == 10  # the s- sagas, from the snapshot
        assert not second.stats().log_lost
    finally:
        second.close()
    assert retention.refused == []  # nothing below a log start was asked for


def test_a_log_start_above_the_restore_point_stops_the_host(
    relay: tuple[Retention, KafkaSettings],
) -> None:
    (retention, kafka), clock = relay, Clock()
    first, points = snapshotted(kafka, clock)
    first.close()
    # Retention deleted the first record past the snapshot of partition 0.
    lost = TP(SAGA_EVENTS, 0)
    retention.delete_before(lost.topic, lost.partition, points[lost] + 1)
    second = SagaHost(kafka, PARTITIONS, clock=clock, start_timers=False)
    try:
        with pytest.raises(
            LogLostError,
            match=re.escape(f"{SAGA_EVENTS} partition 0 has no offset {points[lost]} "),
        ):
            second.acquire(dict.fromkeys(range(PARTITIONS), 1))
        # The fault met the restore: its read at the restore point was refused.
        assert (SAGA_EVENTS, 0, points[lost]) in retention.refused
        stats = second.stats()
        assert SAGA_EVENTS in stats.log_lost and stats.in_flight == 0
        assert second.metrics().log_lost
        with pytest.raises(LogLostError):
            second.handle([start("later", 20)])
    finally:
        second.close()


def test_a_host_refuses_a_log_configured_to_delete_records() -> None:
    with EmbeddedBroker() as broker:
        kafka = platform_settings(broker.bootstrap, PARTITIONS)
        create_bounded(broker.bootstrap, SAGA_EVENTS, PARTITIONS)
        with TopicAdmin(kafka) as admin, pytest.raises(TopicConfigError):
            admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
        bound = f"{SAGA_EVENTS} has retention.ms={WEEK_MS} (must be -1)"
        with pytest.raises(TopicConfigError, match=re.escape(bound)):
            SagaHost(kafka, PARTITIONS, start_timers=False)
