"""Who owns each partition of ``saga.events``, as the projection has read it.

The projection applies the fence every reader of the log applies
(:class:`~actors.core.Fence`): a claim is no saga record, and the records a
replaced owner appended after the claim that replaced it are skipped, so they
never become rows (no phantom steps). The fence needs the epoch in force where
the projection resumes, so it lives in the table ``partition_owners``, written
in the same transaction as the batch's positions: a restarted writer goes on
with the epoch its file last committed, never the one before a claim.

``partition_owners("partition", epoch, owner, engine, claimed_at,
claim_offset, fenced_records, node)``: one row per partition that met a claim
(or skipped a record); ``owner``, ``engine``, ``claimed_at``,
``claim_offset`` and ``node`` (the Ray node the owner ran on) are those of the
claim in force, ``fenced_records`` counts the records skipped on the
partition. A partition without a row is at epoch 0, as logs from before claims
are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import duckdb

from actors.core import Claim, Fence, LogCodec, LogRecord

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS partition_owners (
    "partition" INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, owner VARCHAR,
    engine VARCHAR, claimed_at TIMESTAMPTZ, claim_offset BIGINT,
    fenced_records BIGINT NOT NULL, node VARCHAR);
-- A file written before claims named their node has no such column: added
-- last, it sits where a new file has it, so every file publishes alike.
ALTER TABLE partition_owners ADD COLUMN IF NOT EXISTS node VARCHAR;
"""


class Owner(NamedTuple):
    """A ``partition_owners`` row: ``claimed_at`` in epoch ms; the claim's
    fields are ``None`` when the epoch was learnt from a record (a writer
    that joined the log part-way) or no claim came yet."""

    epoch: int = 0
    owner: str | None = None
    engine: str | None = None
    claimed_at: int | None = None
    claim_offset: int | None = None
    fenced_records: int = 0
    node: str | None = None


class BatchFence:
    """The fence over one batch, from the owners its file committed; what it
    changes is written with the batch (:meth:`write`) and kept only once the
    batch commits (:meth:`Owners.commit`): a batch that fails, and comes
    back, meets the epochs it met the first time."""

    __slots__ = ("_codec", "_committed", "_fence", "changed", "fenced")

    def __init__(self, committed: Mapping[int, Owner], fence: Fence) -> None:
        self._codec = LogCodec()
        self._committed = committed
        self._fence = fence
        #: The rows the batch changed, by partition.
        self.changed: dict[int, Owner] = {}
        #: Records of the batch skipped as a replaced owner's.
        self.fenced = 0

    def _row(self, partition: int) -> Owner:
        if partition in self.changed:
            return self.changed[partition]
        return self._committed.get(partition, Owner())

    def read(self, partition: int, offset: int, raw: bytes) -> LogRecord | None:
        """The record at ``offset`` if the projection applies it; ``None`` for a
        claim or a replaced owner's record. Raises
        :class:`~events.errors.MessageDecodeError` for what is neither, and
        :class:`~actors.errors.RestoreError` for a record above the epoch in
        force (the log lost a claim)."""
        entry = self._codec.decode(raw)
        fence = self._fence
        skipped = fence.skipped
        where = f"saga.events partition {partition} offset {offset}"
        applied = fence.admit(partition, entry, where)
        row = self._row(partition)
        if isinstance(entry, Claim):
            if fence.claim(partition) is entry:  # it took force
                self.changed[partition] = row._replace(
                    epoch=entry.epoch,
                    owner=entry.owner,
                    engine=entry.engine,
                    claimed_at=entry.at or None,  # 0: the claimant gave no time
                    claim_offset=offset,
                    node=entry.node or None,  # "": a claim from before nodes
                )
            return None
        if not applied:
            assert fence.skipped > skipped  # a record is applied, skipped or raises
            self.fenced += 1
            self.changed[partition] = row._replace(
                fenced_records=row.fenced_records + 1
            )
            return None
        if fence.epoch(partition) != row.epoch:
            # A writer that joined part-way took the record's epoch: kept, so
            # the next batch knows it.
            self.changed[partition] = row._replace(epoch=fence.epoch(partition))
        return entry

    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        """The changed rows, inside the batch's transaction."""
        if not self.changed:
            return
        rows: list[tuple[Any, ...]] = [(p, *o) for p, o in self.changed.items()]
        columns = [list(c) for c in zip(*rows, strict=True)]
        db.execute(
            'INSERT OR REPLACE INTO partition_owners ("partition", epoch, owner, '
            "engine, claimed_at, claim_offset, fenced_records, node) "
            "SELECT unnest(?), unnest(?), unnest(?), unnest(?), "
            "to_timestamp(unnest(?) / 1000), unnest(?), unnest(?), unnest(?)",
            columns,
        )


class Owners:
    """The committed ``partition_owners`` rows, and the fence each batch
    starts from."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        db.execute(SCHEMA)
        self._rows: dict[int, Owner] = {
            row[0]: Owner(*row[1:])
            for row in db.execute(
                'SELECT "partition", epoch, owner, engine, epoch_ms(claimed_at), '
                "claim_offset, fenced_records, node FROM partition_owners"
            ).fetchall()
        }

    def get(self, partition: int) -> Owner:
        return self._rows.get(partition, Owner())

    def fence(self, known: Iterable[int], firsts: Mapping[int, int]) -> BatchFence:
        """The fence for a batch. ``known``: the partitions the file holds a
        position on (their epoch is committed, 0 without a row); ``firsts``:
        the first offset the batch holds of each partition.

        A partition the file never read, met at offset 0, starts at epoch 0. Met
        part-way (the consumer group's position is ahead of a newer file), the
        epoch there cannot be known: until a claim, each record's epoch is
        taken as the one in force, as a reader joining a log does.
        """
        epochs = {p: self.get(p).epoch for p in known}
        for partition, offset in firsts.items():
            if partition in epochs:
                continue
            if offset == 0:
                epochs[partition] = 0
            else:
                log.warning(
                    "projection joins saga.events partition %d at offset %d "
                    "without knowing the epoch in force there: records a "
                    "replaced owner appended before the next claim may show",
                    partition,
                    offset,
                )
        return BatchFence(self._rows, Fence(epochs, joined=True))

    def commit(self, batch: BatchFence) -> None:
        """Keep what a batch changed, once it is committed."""
        self._rows.update(batch.changed)
