"""``saga show`` (the client's history and state), audits (its states) and
``saga run``'s follower read ``saga.events`` through the fence: a partition
handed over under a saga, its old owner appending on, reads as the new owner's
history, and claims are neither records nor unreadable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from actors.app.client import SagaClient
from actors.app.run.follower import Follower
from actors.core import LogRecord, SagaState
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.actors.core.sagas import Handover, Run, at, reply_to
from tests.conftest import append_to_log, private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2


class Log(NamedTuple):
    kafka: KafkaSettings
    #: The new owner's records of s-1, with their epochs.
    history: list[LogRecord]
    states: dict[str, SagaState]
    #: Where the old owner's first record after the claim sits.
    zombie_offset: int


def other_saga(partition: int) -> Run:
    """A saga on the same partition as s-1, rejected at once."""
    saga_id = next(
        f"o-{i}"
        for i in range(100)
        if home_partition(f"o-{i}", PARTITIONS) == partition
    )
    run = Run(saga_id)
    run.start(now=500)
    run.feed(reply_to(run.sent[0], now=600, success=False))
    return run


@pytest.fixture(scope="module")
def handed_over_log() -> Iterator[Log]:
    """On s-1's partition: another saga's start from before claims (epoch 0),
    the handover (:class:`Handover`), the zombie's two more records on either
    side of the owner's rejection, and the other saga's end by the owner."""
    partition = home_partition("s-1", PARTITIONS)
    handover = Handover(partition)
    other = other_saga(partition)
    opened, closed = other.records()
    payment, deposit = handover.zombie_goes_on()
    rejected = handover.owner_rejects()
    entries = [opened, *handover.entries, payment, rejected, deposit, at(closed, 2)]
    _, started, _, _, timed_out = handover.entries
    assert isinstance(started, LogRecord) and isinstance(timed_out, LogRecord)
    history = [started, timed_out, rejected]
    assert handover.owner.state is not None and other.state is not None
    states = {"s-1": handover.owner.state, other.saga_id: other.state}
    with private_kafka(PARTITIONS) as kafka:
        acks = append_to_log(kafka, partition, entries)
        assert [a.offset for a in acks] == list(range(len(entries)))
        yield Log(kafka, history, states, zombie_offset=4)


def test_the_client_reads_the_new_owners_history_and_state(
    handed_over_log: Log,
) -> None:
    log = handed_over_log
    with SagaClient(log.kafka) as client:
        assert client.history("s-1") == log.history
        assert client.state("s-1") == log.states["s-1"]
        assert client.states() == log.states


def follow(log: Log, start: int) -> Follower:
    """A follower from ``start`` on s-1's partition, once it read to the end
    (the other saga's end, the log's last record)."""
    starts = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    starts[TP(SAGA_EVENTS, home_partition("s-1", PARTITIONS))] = start
    follower = Follower(log.kafka, starts, set(log.states))
    try:
        deadline = time.monotonic() + 30
        while follower.count() < len(log.states):
            assert time.monotonic() < deadline, (
                f"the follower saw {follower.outcomes()}"
            )
            time.sleep(0.05)
    finally:
        follower.close()
    return follower


def test_the_follower_counts_the_new_owners_outcome(handed_over_log: Log) -> None:
    follower = follow(handed_over_log, 0)
    # The zombie's saga completed after the owner's was rejected.
    assert follower.outcomes() == {s: "rejected" for s in handed_over_log.states}
    assert follower.unreadable == 0  # claims are no unreadable records


def test_a_follower_joining_after_the_claim_takes_the_epochs_it_meets(
    handed_over_log: Log,
) -> None:
    """Joined at the zombie's first record after the claim: it cannot tell
    that one, but the owner's next record says the epoch, and the zombie's
    later records count for nothing."""
    follower = follow(handed_over_log, handed_over_log.zombie_offset)
    assert follower.outcomes() == {s: "rejected" for s in handed_over_log.states}
    assert follower.unreadable == 0
