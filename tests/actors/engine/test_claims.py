"""Taking a partition over when the broker's answer to the claim gives no
offset (a retried send it had taken already): the claim is in the log, and
the claimant reads on past it to the partition's end and wins, instead of
losing a claim that took force (see ``test_snapshots.py`` for that answer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from actors.engine.claims import Incarnation, take
from actors.engine.snapshots import SnapshotStore
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from tests.actors.engine.test_snapshots import Unplaced
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

ME = Incarnation("saga-host-e-0", "e", "node-1", "inc-1", 1)


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(2) as settings:
        yield settings


def test_a_claim_the_broker_placed_nowhere_still_takes_force(
    kafka: KafkaSettings,
) -> None:
    with KafkaMessagePublisher(kafka) as publisher:
        unplaced = Unplaced(publisher)
        snapshots = SnapshotStore(kafka, publisher)
        taken = take(kafka, snapshots, cast(Any, unplaced), {1: 1}, ME, 100, now=0)
    assert not unplaced.armed  # the offset-less answer was given
    assert [(t.partition, t.epoch, t.won) for t in taken.taken] == [(1, 1, True)]
    assert sorted(taken.books) == [1]
