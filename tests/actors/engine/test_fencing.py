"""Partitions that move between hosts, and the fence that stops the old owner.

Hosts in-process on the real broker, no Ray: two hosts over one log, one
granted a partition the other holds, as the controller would after a pause or
a node's death. What the old owner writes after the claim must reach neither
a reader nor a participant.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import pytest

from actors.core import Fence
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.settings import HostSettings
from actors.engine.snapshots import SnapshotStore
from actors.errors import HostUnavailableError, RestoreError
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader, read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, Outgoing
from events.wire.topics import SAGA_EVENTS, SAGA_SNAPSHOTS
from tests.actors.engine.test_host import Clock, commands, reply, start
from tests.actors.engine.test_snapshots import manifest_at, raw
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def a_host(kafka: KafkaSettings, clock: Clock, name: str, **settings: int) -> SagaHost:
    return SagaHost(
        kafka,
        PARTITIONS,
        HostSettings(**settings),
        name=name,
        engine="e-1",
        clock=clock,
        start_timers=False,
    )


def saga_on(partition: int, prefix: str = "s") -> str:
    return next(
        f"{prefix}-{i}"
        for i in range(1000)
        if home_partition(f"{prefix}-{i}", PARTITIONS) == partition
    )


def log_of(kafka: KafkaSettings, partition: int) -> list[bytes]:
    tps = {TP(SAGA_EVENTS, partition): 0}
    return [record.value for record in read_to_end(kafka, tps)]


def test_one_producer_gets_contiguous_offsets_and_another_shows_as_a_gap(
    kafka: KafkaSettings,
) -> None:
    """What the owner's check rests on, on this broker: its own appends to a
    partition take consecutive offsets, batched or not, and another
    producer's append in between leaves a gap it sees."""
    with (
        KafkaMessagePublisher(kafka) as owner,
        KafkaMessagePublisher(kafka) as other,
    ):
        mine = [Outgoing(SAGA_EVENTS, f"k{i}", b"{}", 0) for i in range(50)]
        offsets = [a.offset for a in owner.send_all(mine)]
        assert offsets == list(range(offsets[0], offsets[0] + 50))
        [between] = other.send_all([Outgoing(SAGA_EVENTS, "x", b"{}", 0)])
        [after] = owner.send_all(mine[:1])
        assert between.offset == offsets[-1] + 1
        assert after.offset == between.offset + 1  # a gap in the owner's run


def test_an_owner_replaced_mid_flight_writes_nothing_that_is_applied(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    saga = saga_on(0)
    old = own(a_host(kafka, clock, "host-a"), [0])
    new = a_host(kafka, clock, "host-b")
    try:
        assert old.handle([start(saga, 0)]).applied == 1
        [taken] = new.acquire({0: 2})
        assert taken.won and taken.epoch == 2
        sent_before = len(commands(kafka, "payment.commands.process"))

        # The old owner, not knowing, takes the verification's answer: its
        # record lands after the claim, so it is neither made current nor
        # followed by the payment's command.
        with pytest.raises(HostUnavailableError, match="claimed by another host"):
            old.handle([reply(saga, "verify_user", 1)])
        assert len(commands(kafka, "payment.commands.process")) == sent_before
        # Its next input finds the claim: the partition is its no more.
        report = old.handle([reply(saga, "verify_user", 1)])
        assert report.not_owned == [0] and report.applied == 0
        assert old.ownership().owned == {}
        assert old.ownership().fenced[0].owner == "host-b"

        # Every reader skips the zombie's record: a third host's restore, and
        # the fence over the raw log.
        fence = Fence()
        kept = [r for r in (fence.read(0, raw) for raw in log_of(kafka, 0)) if r]
        assert fence.skipped == 1 and all(r.epoch in (1,) for r in kept)
        state = new.state(saga)
        assert state is not None and state.step_id == "verify_user"
        assert new.handle([reply(saga, "verify_user", 2)]).applied == 1
        assert len(commands(kafka, "payment.commands.process")) == sent_before + 1
        third = a_host(kafka, clock, "host-c")
        [taken] = third.acquire({0: 3})
        restored = third.state(saga)
        assert taken.won and restored is not None
        assert restored.step_id == "process_payment" and restored == new.state(saga)
        third.close()
    finally:
        old.close()
        new.close()


def test_a_sleeper_granted_its_partition_back_claims_it_afresh_from_the_log(
    kafka: KafkaSettings,
) -> None:
    """A host paused while its partition moved, granted it again on waking
    (before it noticed the move): it claims the new epoch and restores what
    the other owner did meanwhile, rather than answer "held" and go on from
    its own out-of-date books."""
    clock = Clock()
    saga = saga_on(0)
    sleeper = own(a_host(kafka, clock, "host-a"), [0])
    other = a_host(kafka, clock, "host-b")
    try:
        sleeper.handle([start(saga, 0)])
        [taken] = other.acquire({0: 2})
        assert taken.won
        other.handle([reply(saga, "verify_user", 1)])
        other.release([0])
        [taken] = sleeper.acquire({0: 3})
        assert (taken.epoch, taken.won) == (3, True)
        assert sleeper.ownership().owned == {0: 3}
        state = sleeper.state(saga)
        assert state is not None and state.step_id == "process_payment"
        assert sleeper.handle([reply(saga, "process_payment", 1)]).applied == 1
    finally:
        sleeper.close()
        other.close()


def test_a_host_whose_rebuild_cannot_read_the_log_says_so_for_its_controller(
    kafka: KafkaSettings,
) -> None:
    """A rebuild that fails for a reason waiting will not mend (here, a
    snapshot whose chunks are not there) is reported in the host's ownership,
    so the controller grants its partitions elsewhere instead of leaving them
    stalled behind a host that still answers."""
    clock = Clock()
    saga = saga_on(0)
    host = own(a_host(kafka, clock, "host-a"), [0])
    try:
        host.handle([start(saga, 0)])
        # A record of the host's epoch it did not append: it must rebuild.
        [*_, last] = log_of(kafka, 0)
        with KafkaMessagePublisher(kafka) as publisher:
            publisher.send_all([Outgoing(SAGA_EVENTS, saga, last, 0)])
            with pytest.raises(HostUnavailableError, match="did not append"):
                host.handle([reply(saga, "verify_user", 1)])
            # The newest snapshot: a manifest whose one chunk is nowhere.
            with PartitionReader(kafka) as reader:
                [end] = reader.ends([TP(SAGA_SNAPSHOTS, 0)]).values()
            publisher.send_all([raw(manifest_at(1, first=end, previous=-1))])
        assert host.ownership().failing == ""
        with pytest.raises(RestoreError, match="incomplete"):
            host.handle([reply(saga, "verify_user", 1)])
        failing = host.ownership().failing
        assert failing.startswith("rebuilding from the log failed: RestoreError(")
    finally:
        host.close()


def test_an_idle_owner_finds_the_newer_claim_and_drops_the_partition(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    old = own(a_host(kafka, clock, "host-a", fence_check_ms=1), [0, 1])
    new = a_host(kafka, clock, "host-b")
    try:
        old.handle([start(saga_on(0), 0)])
        [taken] = new.acquire({0: 2})
        assert taken.won
        old._check_fence()  # what its timer thread does when idle
        assert old.fire_timers() == 0  # rebuilt from the log first
        assert old.ownership().owned == {1: 1}
        assert sorted(old.ownership().fenced) == [0]
    finally:
        old.close()
        new.close()


def test_a_grant_at_an_epoch_already_used_is_refused(kafka: KafkaSettings) -> None:
    """Two grants of one epoch (a controller that restarted, say): the first
    claim in the log wins, the second host learns it lost, and nothing it
    appended is applied."""
    clock = Clock()
    first, second = (a_host(kafka, clock, f"host-{n}") for n in "ab")
    try:
        results: dict[str, bool] = {}

        def grant(name: str, host: SagaHost) -> None:
            [taken] = host.acquire({0: 1})
            results[name] = taken.won

        threads = [
            threading.Thread(target=grant, args=(n, h))
            for n, h in (("a", first), ("b", second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results.values()) == [False, True]
        loser = second if results["a"] else first
        assert loser.ownership().owned == {}
        [again] = loser.acquire({0: 1})  # a stale grant, acted on late
        assert not again.won and again.epoch == 1
    finally:
        first.close()
        second.close()


def test_a_release_leaves_a_snapshot_the_next_owner_starts_from(
    kafka: KafkaSettings,
) -> None:
    clock = Clock()
    old = own(a_host(kafka, clock, "host-a"), [0])
    new = a_host(kafka, clock, "host-b")
    try:
        sagas = [saga_on(0, f"r{i}") for i in range(5)]
        old.handle([start(s, i) for i, s in enumerate(sagas)])
        old.release([0])
        assert old.ownership().owned == {}
        [taken] = new.acquire({0: 2})
        assert taken.won
        stats = new.stats()
        assert (stats.restored_sagas, stats.restored_records) == (5, 0)
        assert all(new.state(s) is not None for s in sagas)
    finally:
        old.close()
        new.close()


class Interrupted:
    """A publisher that, halfway through the first batch it sends, lets
    another writer send first: the interleaving, made certain."""

    def __init__(
        self, publisher: KafkaMessagePublisher, meanwhile: Callable[[], None]
    ) -> None:
        self._publisher = publisher
        self._meanwhile: Callable[[], None] | None = meanwhile

    def send_all(self, records: Iterable[Outgoing]) -> list[Ack]:
        records = list(records)
        if self._meanwhile is None:
            return self._publisher.send_all(records)
        half = len(records) // 2
        acks = self._publisher.send_all(records[:half])
        meanwhile, self._meanwhile = self._meanwhile, None
        meanwhile()
        return acks + self._publisher.send_all(records[half:])


def test_snapshots_whose_chunks_interleave_still_restore(
    kafka: KafkaSettings,
) -> None:
    """A replaced owner and the new one snapshot the same partition at once:
    the manifest finds its own chunks among the other's."""
    clock = Clock()
    host = own(a_host(kafka, clock, "host-a"), [0])
    try:
        ids = [saga_on(0, f"i{i}") for i in range(12)]
        host.handle([start(s, i) for i, s in enumerate(ids)])
        sagas = [host.state(s) for s in ids]
    finally:
        host.close()
    with KafkaMessagePublisher(kafka) as publisher:
        other = SnapshotStore(kafka, publisher, chunk_bytes=600, writer="w-2")
        late = Interrupted(
            publisher, lambda: other.write(0, 7, sagas[:3], [], {}, -1, 1)
        )
        mine = SnapshotStore(kafka, cast(Any, late), chunk_bytes=600, writer="w-1")
        manifest = mine.write(0, 7, sagas, [], {}, -1, 2)
        with PartitionReader(kafka) as reader:
            [found] = mine.latest(reader, [0]).values()
            writers = [
                json.loads(r.value).get("writer")
                for r in reader.read({TP(SAGA_SNAPSHOTS, 0): 0})
                if r.offset < manifest
            ]
    assert "w-2" in writers[writers.index("w-1") :]  # they did interleave
    assert found.sagas == sagas and found.epoch == 2
