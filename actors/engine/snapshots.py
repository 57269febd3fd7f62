"""Snapshots of a partition's in-flight sagas on ``saga.snapshots``.

A snapshot covers ``saga.events`` of one partition up to (not including)
``log_offset``: restore = newest snapshot + the log from ``log_offset`` on. It is
written to the same partition number of ``saga.snapshots`` as chunks (each well
under the message size limit) followed by a manifest that points back at the
first chunk. A snapshot whose writer died before the manifest is ignored: every
chunk also points at the previous manifest, so the newest complete snapshot is
found from the partition's last record with at most two seeks, without reading
the topic from its start and without relying on compaction.

Besides the in-flight sagas, a snapshot keeps the partition's recently finished
sagaIds, so a late duplicate for a saga that ended is still recognised after a
restart.

A snapshot carries the epoch its writer owned the log at, where a restore
starts its fence (:mod:`actors.core.ownership`). Any complete snapshot is a
valid start, even one a replaced owner wrote late: an owner makes a batch
current only once it knows its records landed before any newer claim, so its
books never run past one. Two writers (the owner, and one it replaced) can
interleave their chunks, so each chunk names its writer, and a manifest's
chunks are those of its writer between its first chunk and itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Generic, TypeAlias, TypeVar

import msgspec

from actors.core import LOG_MAX_DEPTH, SagaState
from actors.errors import RestoreError, SnapshotError
from events.errors import MessageDecodeError
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing, Record
from events.wire.messages import decode_json
from events.wire.topics import SAGA_SNAPSHOTS

#: Bump when the snapshot layout changes: an old snapshot is then skipped and
#: the log replayed from its start, never misread.
FORMAT: Final = 2
S = TypeVar("S")
_NO_MANIFEST: Final = -1
#: How many manifests that do not say where their chunks start (written before
#: writers refused to) a restore passes over for an older one that does; past
#: them it replays the log from its start, as at the chain's end. Each costs a
#: seek on saga.snapshots; each needed a lost broker answer, so a long run of
#: them is rare; and a damaged chain (a manifest pointing at itself or a later
#: one) would otherwise never end.
MAX_PASSED_OVER: Final = 16


class _Chunk(
    msgspec.Struct,
    Generic[S],
    frozen=True,
    kw_only=True,
    tag="chunk",
    rename="camel",
):
    """Written with states already encoded (``S`` = ``msgspec.Raw``, so the
    packer measures each once), read back as ``SagaState``."""

    format: int
    partition: int
    log_offset: int
    index: int
    total: int
    previous: int
    writer: str = ""
    sagas: list[S] = []
    finished: list[str] = []
    #: Those of ``finished`` that compensated a step in doubt, and that step.
    doubtful: dict[str, str] = {}


class _Manifest(
    msgspec.Struct, frozen=True, kw_only=True, tag="manifest", rename="camel"
):
    format: int
    partition: int
    log_offset: int
    first_offset: int
    chunks: int
    sagas: int
    finished: int
    previous: int
    epoch: int = 0
    writer: str = ""


_Record: TypeAlias = _Chunk[SagaState] | _Manifest


class Snapshot(msgspec.Struct):
    """What a restore starts from: states and finished ids as of ``log_offset``."""

    partition: int
    log_offset: int
    sagas: list[SagaState]
    finished: list[str]
    #: Offset of the manifest on saga.snapshots (-1: none; start from the log).
    manifest_offset: int = _NO_MANIFEST
    doubtful: dict[str, str] = {}
    #: The epoch in force at ``log_offset``: the writer's.
    epoch: int = 0


class SnapshotStore:
    """Writes and finds snapshots for the partitions of one host."""

    def __init__(
        self,
        settings: KafkaSettings,
        publisher: KafkaMessagePublisher,
        chunk_bytes: int | None = None,
        writer: str = "",
    ) -> None:
        if chunk_bytes is None:
            # Well under the record limit, which the chunk's framing adds to.
            chunk_bytes = min(256 * 1024, settings.max_message_bytes // 4)
        if chunk_bytes >= settings.max_message_bytes:
            raise ValueError("chunk_bytes must be below kafka.max_message_bytes")
        self._settings = settings
        self._publisher = publisher
        #: Names this store's chunks apart from another writer's.
        self._writer = writer
        self._chunk_bytes = chunk_bytes
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Record)

    def write(
        self,
        partition: int,
        log_offset: int,
        sagas: Iterable[SagaState],
        finished: Iterable[str],
        doubtful: dict[str, str],
        previous: int,
        epoch: int = 0,
    ) -> int:
        """Write a snapshot; returns its manifest's offset."""
        chunks = list(self._pack(sagas, finished, doubtful))
        header: dict[str, Any] = {
            "format": FORMAT,
            "partition": partition,
            "log_offset": log_offset,
            "total": len(chunks),
            "previous": previous,
            "writer": self._writer,
        }
        acks = self._publisher.send_all(
            self._record(
                partition,
                _Chunk[msgspec.Raw](index=i, sagas=s, finished=f, doubtful=d, **header),
            )
            for i, (s, f, d) in enumerate(chunks)
        )
        offsets = [ack.offset for ack in acks]
        if min(offsets) < 0:
            # The broker's answer to a batch it had already (a retry of a
            # send whose answer was lost) gives no offset: a manifest must
            # point at its first chunk, so this snapshot gets none.
            raise SnapshotError(
                f"a chunk of the snapshot of partition {partition} landed on "
                f"{SAGA_SNAPSHOTS} at an offset the broker did not say: no "
                "manifest written; the next snapshot tries again"
            )
        manifest = _Manifest(
            format=FORMAT,
            partition=partition,
            log_offset=log_offset,
            first_offset=offsets[0],
            chunks=len(chunks),
            sagas=sum(len(s) for s, _, _ in chunks),
            finished=sum(len(f) for _, f, _ in chunks),
            previous=previous,
            epoch=epoch,
            writer=self._writer,
        )
        [ack] = self._publisher.send_all([self._record(partition, manifest)])
        if ack.offset < 0:
            # It landed, somewhere: restores find it as the last record, but
            # the next snapshot's chunks cannot point back at it.
            raise SnapshotError(
                f"the manifest of the snapshot of partition {partition} landed on "
                f"{SAGA_SNAPSHOTS} at an offset the broker did not say"
            )
        return ack.offset

    def _record(
        self, partition: int, record: _Chunk[msgspec.Raw] | _Manifest
    ) -> Outgoing:
        return Outgoing(
            SAGA_SNAPSHOTS,
            f"partition-{partition}",
            self._encoder.encode(record),
            partition,
        )

    def _pack(
        self,
        sagas: Iterable[SagaState],
        finished: Iterable[str],
        doubtful: dict[str, str],
    ) -> Iterator[tuple[list[msgspec.Raw], list[str], dict[str, str]]]:
        """Greedy chunks by encoded size; always at least one (maybe empty). A
        finished id's doubtful step goes in the same chunk as the id."""
        states: list[msgspec.Raw] = []
        ids: list[str] = []
        steps: dict[str, str] = {}
        size = 0
        produced = False
        for state in sagas:
            raw = msgspec.Raw(self._encoder.encode(state))
            if states and size + len(raw) > self._chunk_bytes:
                yield states, [], {}
                produced = True
                states, size = [], 0
            states.append(raw)
            size += len(raw) + 1
        for saga_id in finished:
            step = doubtful.get(saga_id, "")
            grows = len(saga_id) + 3 + (len(saga_id) + len(step) + 6 if step else 0)
            if (states or ids) and size + grows > self._chunk_bytes:
                yield states, ids, steps
                produced = True
                states, ids, steps, size = [], [], {}, 0
            ids.append(saga_id)
            if step:
                steps[saga_id] = step
            size += grows
        if states or ids or not produced:
            yield states, ids, steps

    def latest(
        self, reader: PartitionReader, partitions: Iterable[int]
    ) -> dict[int, Snapshot]:
        """The newest complete snapshot of each partition (empty if none)."""
        tps = [TP(SAGA_SNAPSHOTS, p) for p in partitions]
        ends = reader.ends(tps)
        return {tp.partition: self._latest(reader, tp, ends[tp]) for tp in tps}

    def _latest(self, reader: PartitionReader, tp: TP, end: int) -> Snapshot:
        empty = Snapshot(tp.partition, 0, [], [])
        if end == 0:
            return empty
        last = self._read(reader, tp, end - 1, 1)[0]
        manifest: _Record | None = None
        if isinstance(last, _Chunk):
            manifest_offset = last.previous
        else:
            manifest_offset, manifest = end - 1, last
        for _ in range(MAX_PASSED_OVER + 1):
            if manifest_offset == _NO_MANIFEST:
                return empty  # no snapshot before: replay the whole log
            if manifest is None:
                manifest = self._read(reader, tp, manifest_offset, 1)[0]
            if not isinstance(manifest, _Manifest) or manifest.format != FORMAT:
                return empty  # an unknown layout: replay the whole log instead
            if manifest.first_offset >= 0:
                return self._assembled(reader, tp, manifest_offset, manifest)
            # Its writer took the broker's offset-less answer for its first
            # chunk (before writers refused to): the snapshot before it.
            manifest_offset, manifest = manifest.previous, None
        return empty  # passed over MAX_PASSED_OVER: replay the whole log

    def _assembled(
        self, reader: PartitionReader, tp: TP, manifest_offset: int, manifest: _Manifest
    ) -> Snapshot:
        """The snapshot ``manifest`` closes, from its writer's chunks between
        its first chunk and itself; a chunk sent twice (a producer's retry
        without idempotence) counts once."""
        span = manifest_offset - manifest.first_offset
        chunks: dict[int, _Chunk[SagaState]] = {}
        for r in self._read(reader, tp, manifest.first_offset, span):
            if (
                isinstance(r, _Chunk)
                and r.log_offset == manifest.log_offset
                and r.writer == manifest.writer
            ):
                chunks.setdefault(r.index, r)
        if sorted(chunks) != list(range(manifest.chunks)):
            raise RestoreError(
                f"snapshot of partition {tp.partition} at log offset "
                f"{manifest.log_offset} is incomplete on {SAGA_SNAPSHOTS} (offsets "
                f"from {manifest.first_offset}): was the topic's retention shorter "
                "than a snapshot interval?"
            )
        ordered = [chunks[i] for i in range(manifest.chunks)]
        return Snapshot(
            partition=tp.partition,
            log_offset=manifest.log_offset,
            sagas=[s for c in ordered for s in c.sagas],
            finished=[f for c in ordered for f in c.finished],
            manifest_offset=manifest_offset,
            doubtful={k: v for c in ordered for k, v in c.doubtful.items()},
            epoch=manifest.epoch,
        )

    def _read(
        self, reader: PartitionReader, tp: TP, offset: int, count: int
    ) -> list[_Record]:
        records = [
            self._decode(tp, record) for record in reader.read({tp: offset}, count)
        ]
        if len(records) < count:
            raise RestoreError(
                f"{SAGA_SNAPSHOTS} partition {tp.partition}: expected {count} "
                f"record(s) from offset {offset}, found {len(records)}"
            )
        return records

    def _decode(self, tp: TP, record: Record) -> _Record:
        try:
            decoded: _Record = decode_json(
                self._decoder, record.value, max_depth=LOG_MAX_DEPTH
            )
            return decoded
        except MessageDecodeError as exc:
            raise RestoreError(
                f"{SAGA_SNAPSHOTS} partition {tp.partition} offset "
                f"{record.offset} is not a snapshot record: {exc}"
            ) from exc
