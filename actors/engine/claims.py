"""Taking partitions over: the claim, then the restore up to it.

A host takes a partition only when the controller grants it, at the epoch the
grant names (a host never picks an epoch itself, so a stale grant acted on
late can never take a partition back: its claim is void). For each grant:

1. the partition is restored as any restore does (newest snapshot, then the
   log through the fence) up to the log's end, which tells the epoch in force;
   a grant at or below it is refused there, with nothing appended;
2. the claim is appended, and the log read on past it: the claim took force
   if it is the claim in force once read (a claim of the same epoch appended
   first, or a newer one after it, means another host has the partition);
3. only then are the books handed to the host, which re-arms their deadlines
   and re-sends the commands the tail issued, and takes input for it.

Any writes the replaced owner makes after the claim are skipped by every
reader, and that owner finds out at its next append or idle check (see
:mod:`actors.engine.host`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Final, Protocol, TypeVar

import msgspec

from actors.core import Claim, Fence, LogCodec, LogRecord
from actors.engine.books import PartitionBooks
from actors.engine.restore import Restored, load, read_on
from actors.engine.snapshots import SnapshotStore
from actors.errors import HostUnavailableError
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing
from events.wire.topics import SAGA_EVENTS

#: How long a claim that was acknowledged may take to show in a read.
_SHOW_S: Final = 10.0
_CODEC: Final = LogCodec()


class Taken(msgspec.Struct, frozen=True):
    """What became of a grant of ``partition``: ``won``, or who holds it.
    ``epoch`` is the epoch in force after (the grant's, if won)."""

    partition: int
    epoch: int
    won: bool
    owner: str = ""
    engine: str = ""
    #: When the claim in force was made (epoch ms, the claimant's clock).
    at: int = 0


class Incarnation(msgspec.Struct, frozen=True):
    """One process of a host: ``incarnation`` changes when Ray restarts it."""

    name: str
    engine: str
    node: str
    incarnation: str
    pid: int


class Ownership(msgspec.Struct, frozen=True):
    """What a host owns (partition -> epoch) and what it lost to newer claims
    (the last loss of each partition, kept if it is granted back later);
    ``log_lost`` if its log lost records (it then refuses all work);
    ``failing`` while its rebuild from the log fails for a reason waiting on
    the broker will not mend (an unreadable snapshot, a bug): it takes no
    input then, and the controller grants its partitions elsewhere."""

    host: Incarnation
    owned: dict[int, int]
    fenced: dict[int, Taken]
    log_lost: str = ""
    failing: str = ""


class Takeover(msgspec.Struct):
    """The books of the partitions won, the sagaIds their tails moved (to
    re-send), what each grant came to, and the restore's counts."""

    books: dict[int, PartitionBooks]
    touched: set[str]
    taken: list[Taken]
    counts: Restored


def claim_key(partition: int) -> str:
    """The Kafka key of a claim: not a sagaId, so no saga's records share it."""
    return f"claim/{partition}"


def take(
    kafka: KafkaSettings,
    snapshots: SnapshotStore,
    publisher: KafkaMessagePublisher,
    grants: Mapping[int, int],
    claimant: Incarnation,
    retention: int,
    now: int,
) -> Takeover:
    """Claim each partition of ``grants`` at its epoch for ``claimant``,
    restored up to the claim (see the module)."""
    started = time.perf_counter()
    books = {number: PartitionBooks(retention) for number in grants}
    with PartitionReader(kafka) as reader:
        touched, counts, fence = load(reader, snapshots, books)
        claims = {
            number: Claim(
                partition=number,
                epoch=epoch,
                owner=claimant.name,
                engine=claimant.engine,
                at=now,
                node=claimant.node,
            )
            for number, epoch in grants.items()
            if epoch > fence.epoch(number)
        }
        acks = publisher.send_all(
            Outgoing(SAGA_EVENTS, claim_key(number), _CODEC.encode(claim), number)
            for number, claim in claims.items()
        )
        claimed = {number: books[number] for number in claims}
        # Read on past each claim: to its offset, or, where the broker's
        # answer gave none (a retried send it had taken already), to the
        # partition's end now, which is past the claim.
        targets = {n: ack.offset for n, ack in zip(claims, acks, strict=True)}
        unplaced = [TP(SAGA_EVENTS, n) for n, offset in targets.items() if offset < 0]
        targets |= {tp.partition: end - 1 for tp, end in reader.ends(unplaced).items()}
        records = counts.records
        deadline = time.monotonic() + _SHOW_S
        while any(claimed[n].end <= target for n, target in targets.items()):
            if time.monotonic() > deadline:
                raise HostUnavailableError(
                    f"claims on {SAGA_EVENTS} {sorted(claims)} were acknowledged "
                    f"but did not show in a read within {_SHOW_S:g} s"
                )
            records += read_on(reader, claimed, fence, touched)
    won: dict[int, PartitionBooks] = {}
    taken = []
    for number in grants:
        in_force = fence.claim(number)
        if in_force is not None and in_force == claims.get(number):
            books[number].epoch = in_force.epoch
            won[number] = books[number]
        taken.append(
            Taken(
                partition=number,
                epoch=fence.epoch(number),
                won=number in won,
                owner=in_force.owner if in_force else "",
                engine=in_force.engine if in_force else "",
                at=in_force.at if in_force else 0,
            )
        )
    ours = {s for part in won.values() for s in part.sagas}
    return Takeover(
        books=won,
        touched=touched & ours,
        taken=taken,
        counts=counts._replace(records=records, seconds=time.perf_counter() - started),
    )


def foreign_writes(
    kafka: KafkaSettings,
    partition: int,
    span: tuple[int, int],
    ours: set[int],
    epoch: int,
) -> str:
    """Why the records of ``partition`` in ``span`` (first and last offset)
    are not all this owner's own appends (``ours``, at ``epoch``) or a
    replaced owner's ("" if they are): a newer claim, or a record of this
    epoch that is not one of ours (a duplicate of the owner's own, say)."""
    if -1 in ours:
        return f"partition {partition} took an append the broker gave no offset for"
    start, last = span
    fence = Fence({partition: epoch})
    with PartitionReader(kafka) as reader:
        for raw in reader.read({TP(SAGA_EVENTS, partition): start}):
            if raw.offset > last:
                break
            entry = _CODEC.decode(raw.value)
            fence.admit(partition, entry)
            if fence.epoch(partition) != epoch:
                return (
                    f"partition {partition} was claimed by another host at "
                    f"epoch {fence.epoch(partition)}"
                )
            mine = isinstance(entry, LogRecord) and entry.epoch == epoch
            if mine and raw.offset not in ours:
                return (
                    f"partition {partition} holds a record at this owner's epoch "
                    f"that it did not append, at offset {raw.offset}"
                )
    return ""


class _Acquires(Protocol):
    def acquire(self, grants: Mapping[int, int]) -> list[Taken]: ...


H = TypeVar("H", bound=_Acquires)


def own(host: H, partitions: Iterable[int]) -> H:
    """Grant ``partitions`` to ``host`` as a controller would, each at one
    above the epoch in force until it holds: for a host driven in-process
    (tests, benchmarks), with no other claimant."""
    grants = dict.fromkeys(partitions, 1)
    while grants:
        taken = host.acquire(grants)
        grants = {t.partition: t.epoch + 1 for t in taken if not t.won}
    return host
