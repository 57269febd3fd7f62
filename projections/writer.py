"""The saga projections in DuckDB, written in batches from the log and the DLQ.

The public schema (notebooks and users rely on these names; columns may be
added, never renamed):

- ``saga_events(saga_id, seq, saga_type, event_type, occurred_at, data,
  partition, offset)``: every saga event, in order (``data`` is the event as
  JSON; ``partition`` and ``offset`` place its log record on ``saga.events``:
  the events of one decision share them).
- ``sagas(saga_id, saga_type, status, started_at, ended_at, duration_ms,
  current_step, retries, compensations, updated_at, reason, last_error)``:
  ``updated_at`` is its newest event's time, ``reason`` its outcome's,
  ``last_error`` the newest refusal or timeout of a step.
- ``steps(saga_id, step, attempt, commanded_at, replied_at, latency_ms,
  outcome)``; a compensation's step is ``<step>.compensate``.
- ``dead_letters(message_id, saga_id, topic, partition, offset, error,
  attempts, dead_at, payload, source, dlq_partition, dlq_offset, key,
  payload_size, saga_type, step, saga_status)``.
- ``dead_letter_actions(dlq_partition, dlq_offset, state, at, operator,
  reason, sent, actions_partition, actions_offset)``: what operators did with
  the letters (``saga.dlq.actions``); a letter's state is its newest row's.
- ``partition_owners(partition, epoch, owner, engine, claimed_at,
  claim_offset, fenced_records, node)``: who owns each partition of the log
  (see :mod:`projections.owners`).

A batch and the positions it consumed commit in one transaction
(``projection_offsets``), so a redelivered record is recognised by its
position and skipped; the primary keys make a replay change nothing either.
``sagas`` and ``steps`` are folded from the same typed events the batch
writes to ``saga_events`` (:mod:`projections.rows`), so they can never
disagree with the history. The log is read
through the fence every reader of it applies: claims and the records a
replaced owner appended after its partition was claimed make no rows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from events.errors import MessageDecodeError
from events.wire.dead_letters import DeadLetterCodec, LetterActionCodec
from events.wire.topics import SAGA_DLQ, SAGA_DLQ_ACTIONS, SAGA_EVENTS
from projections.owners import BatchFence, Owners
from projections.rows import ENDED, SAGA_COLUMNS, LoggedEvent, OpenRows, SagaRow
from projections.schema import migrate

log = logging.getLogger(__name__)


class Consumed(NamedTuple):
    """A record as consumed: where it came from and its bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes


class BatchReport(NamedTuple):
    events: int
    dead_letters: int
    skipped: int
    #: Records that are not a log record or a dead letter: logged and passed
    #: over, since reading them again would fail the same way forever.
    unreadable: int = 0
    #: Records skipped as a replaced owner's (appended after the claim that
    #: replaced it).
    fenced: int = 0
    #: ``partition_owners`` rows the batch changed.
    owners: int = 0


#: The tables published for readers, and the order their rows are written in.
PUBLISHED = {
    "saga_events": "saga_id, seq",
    "sagas": "started_at",
    "steps": "commanded_at",
    "dead_letters": "dead_at",
    "dead_letter_actions": "at",
    "projection_offsets": "topic, partition",
    "partition_owners": "partition",
}


class ProjectionWriter:
    """Applies batches of consumed records to the projection tables."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        migrate(db)
        self._owners = Owners(db)
        self._letters = DeadLetterCodec()
        self._letter_actions = LetterActionCodec()
        #: The newest decision time (epoch ms) applied: how far the tables reach.
        self.newest_at = 0
        # Rows still changing, rebuilt from the tables after a restart.
        self._open = OpenRows()
        self._load_open()
        self._next = {
            (topic, partition): offset
            for topic, partition, offset in self._db.execute(
                'SELECT topic, "partition", next_offset FROM projection_offsets'
            ).fetchall()
        }

    def _load_open(self) -> None:
        for row in self._db.execute(
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE status NOT IN (SELECT unnest(?))",
            [list(ENDED)],
        ).fetchall():
            self._open.sagas[row[0]] = SagaRow.of(row)
        for saga_id, step, attempt, commanded in self._db.execute(
            "SELECT saga_id, step, attempt, epoch_ms(commanded_at) FROM steps "
            "WHERE replied_at IS NULL"
        ).fetchall():
            self._open.steps[(saga_id, step, attempt)] = commanded

    def _row(self, saga_id: str) -> SagaRow | None:
        """A saga's row as the file has it, to go on from."""
        row = self._db.execute(
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = ?", [saga_id]
        ).fetchone()
        return None if row is None else SagaRow.of(row)

    def next_offset(self, topic: str, partition: int) -> int:
        return int(self._next.get((topic, partition), 0))

    def apply(self, batch: Sequence[Consumed]) -> BatchReport:
        """Write a batch and the positions it consumed in one transaction."""
        events: list[LoggedEvent] = []
        letters: list[tuple[Any, ...]] = []
        actions: list[tuple[Any, ...]] = []
        positions: dict[tuple[str, int], int] = {}
        skipped = unreadable = 0
        fence = self._fence(batch)
        for item in batch:
            if item.offset < self.next_offset(item.topic, item.partition):
                skipped += 1  # consumed before: a redelivery
                continue
            positions[(item.topic, item.partition)] = item.offset + 1
            try:
                self._read(item, fence, events, letters, actions)
            except MessageDecodeError as exc:
                unreadable += 1
                log.error(
                    "projection passes over %s/%d/%d: %s",
                    item.topic,
                    item.partition,
                    item.offset,
                    exc,
                )
        if not positions:
            return BatchReport(0, 0, skipped)
        sagas, steps = self._open.fold(events, self._row)
        db = self._db
        db.begin()
        try:
            if events:
                columns = [list(c) for c in zip(*(e.row for e in events), strict=True)]
                db.execute(
                    "INSERT OR IGNORE INTO saga_events SELECT unnest(?), unnest(?), "
                    "unnest(?), unnest(?), to_timestamp(unnest(?) / 1000), "
                    "CAST(unnest(?) AS JSON), unnest(?), unnest(?)",
                    columns,
                )
                # Each saga's row as of the batch's last event of it.
                _upsert(db, "sagas", list(sagas.values()), time_columns=(3, 4, 9))
                _upsert(db, "steps", list(steps.values()), time_columns=(3, 4))
            for table, rows in (
                ("dead_letters", letters),
                ("dead_letter_actions", actions),
            ):
                if rows:
                    columns = [list(c) for c in zip(*rows, strict=True)]
                    marks = ", ".join("unnest(?)" for _ in columns)
                    db.execute(f"INSERT OR IGNORE INTO {table} SELECT {marks}", columns)
            db.execute(
                "INSERT OR REPLACE INTO projection_offsets "
                "SELECT unnest(?), unnest(?), unnest(?)",
                [
                    [t for t, _ in positions],
                    [p for _, p in positions],
                    list(positions.values()),
                ],
            )
            fence.write(db)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        self._next.update(positions)
        self._owners.commit(fence)
        self._open.settle(sagas, steps)
        return BatchReport(
            len(events),
            len(letters),
            skipped,
            unreadable,
            fence.fenced,
            len(fence.changed),
        )

    def _fence(self, batch: Sequence[Consumed]) -> BatchFence:
        """The fence for ``batch``, from the epochs the file committed."""
        firsts: dict[int, int] = {}
        for item in batch:
            if item.topic == SAGA_EVENTS:
                firsts.setdefault(item.partition, item.offset)
        known = [p for topic, p in self._next if topic == SAGA_EVENTS]
        return self._owners.fence(known, firsts)

    def _read(
        self,
        item: Consumed,
        fence: BatchFence,
        events: list[LoggedEvent],
        letters: list[tuple[Any, ...]],
        actions: list[tuple[Any, ...]],
    ) -> None:
        """The item's rows onto ``events``, ``letters`` or ``actions``."""
        if item.topic == SAGA_EVENTS:
            record = fence.read(item.partition, item.offset, item.value)
            if record is None:
                return  # a claim, or a replaced owner's record: no rows
            self.newest_at = max(self.newest_at, record.at)
            for seq, event in enumerate(record.events, record.seq):
                events.append(
                    LoggedEvent(
                        record.saga_id,
                        seq,
                        record.saga_type,
                        record.at,
                        event,
                        item.partition,
                        item.offset,
                    )
                )
        elif item.topic == SAGA_DLQ:
            letter = self._letters.decode(item.value)
            letters.append(
                (
                    letter.message_id,
                    letter.saga_id,
                    letter.topic,
                    letter.partition,
                    letter.offset,
                    letter.error,
                    letter.attempts,
                    letter.dead_at,
                    letter.payload,
                    letter.source,
                    item.partition,
                    item.offset,
                    letter.key,
                    letter.payload_size,
                    letter.saga_type,
                    letter.step,
                    letter.saga_status,
                )
            )
        elif item.topic == SAGA_DLQ_ACTIONS:
            action = self._letter_actions.decode(item.value)
            partition, _, offset = action.letter.partition(":")
            actions.append(
                (
                    int(partition),
                    int(offset),
                    str(action.state),
                    action.at,
                    action.operator,
                    action.reason,
                    action.sent,
                    item.partition,
                    item.offset,
                )
            )

    def publish(self, directory: Path) -> float:
        """Write every public table as Parquet into ``directory``, each file
        replaced atomically, for any number of readers (see
        :mod:`projections.reader`). Returns the seconds it took."""
        started = time.perf_counter()
        directory.mkdir(parents=True, exist_ok=True)
        for table, order in PUBLISHED.items():
            final = directory / f"{table}.parquet"
            partial = directory / f".{table}.parquet.partial"
            self._db.execute(
                f"COPY (SELECT * FROM {table} ORDER BY {_quoted(order)}) "
                f"TO '{partial}' (FORMAT parquet)"
            )
            # A reader holding the old file keeps reading it; new readers get
            # the new one. Never a half-written file.
            os.replace(partial, final)
        (directory / "published_at").write_text(f"{time.time():.3f}\n")
        return time.perf_counter() - started


def _upsert(
    db: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[tuple[Any, ...]],
    time_columns: tuple[int, ...],
) -> None:
    """Insert or replace rows with one statement; epoch-ms columns become times."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    marks = ", ".join(
        "to_timestamp(unnest(?) / 1000)" if i in time_columns
        else "unnest(?)"
        for i in range(len(columns))
    )  # fmt: skip
    db.execute(f"INSERT OR REPLACE INTO {table} SELECT {marks}", columns)


def _quoted(columns: str) -> str:
    return ", ".join(f'"{c.strip()}"' for c in columns.split(","))
