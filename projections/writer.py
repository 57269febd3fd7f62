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
``sagas`` and ``steps`` are recomputed from ``saga_events`` for the sagas a
batch touched, so they can never disagree with the history. The log is read
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
import msgspec

from actors.core import (
    COMPENSATE,
    OUTCOMES,
    TAG_OF,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    RetryRequested,
    SagaEvent,
    SagaStarted,
    Status,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from events.errors import MessageDecodeError
from events.wire.dead_letters import DeadLetterCodec, LetterActionCodec
from events.wire.topics import SAGA_DLQ, SAGA_DLQ_ACTIONS, SAGA_EVENTS
from projections.owners import BatchFence, Owners
from projections.schema import migrate

log = logging.getLogger(__name__)

#: Each answer to a command, and the step outcome it records.
_ANSWERS: dict[type, str] = {
    StepSucceeded: "succeeded",
    StepFailed: "failed",
    StepTimedOut: "timed_out",
    StepCompensated: "succeeded",
    CompensationFailed: "failed",
    CompensationTimedOut: "timed_out",
}
#: The events about undoing a step: their ``steps`` rows are ``<step>.compensate``.
_COMPENSATION = (
    CompensationCommanded,
    StepCompensated,
    CompensationFailed,
    CompensationTimedOut,
)
#: The statuses of sagas that ended: their rows are final.
ENDED: tuple[str, ...] = tuple(s.value for s in Status if s.terminal)


#: The ``sagas`` columns a row in memory is rebuilt from (see ``_Saga.of``).
_SAGA_COLUMNS = (
    "saga_id, saga_type, status, epoch_ms(started_at), current_step, retries, "
    "compensations, epoch_ms(updated_at), reason, last_error"
)


class _Saga:
    """A ``sagas`` row being built: kept in memory until the saga ends."""

    __slots__ = (
        "compensations",
        "current_step",
        "ended_at",
        "last_error",
        "reason",
        "retries",
        "saga_type",
        "started_at",
        "status",
        "updated_at",
    )

    def __init__(self, saga_type: str, started_at: int) -> None:
        self.saga_type = saga_type
        self.status: str = Status.RUNNING
        self.started_at = started_at
        self.ended_at: int | None = None
        self.current_step: str | None = None
        self.retries = 0
        self.compensations = 0
        self.updated_at = started_at
        self.reason: str | None = None
        self.last_error: str | None = None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Saga:
        """From a ``sagas`` row selected as :data:`_SAGA_COLUMNS`."""
        saga = cls(row[1], row[3])
        saga.status, saga.current_step = row[2], row[4]
        saga.retries, saga.compensations = row[5], row[6]
        saga.updated_at = row[3] if row[7] is None else row[7]
        saga.reason, saga.last_error = row[8], row[9]
        return saga

    def row(self, saga_id: str) -> tuple[Any, ...]:
        duration = None if self.ended_at is None else self.ended_at - self.started_at
        return (
            saga_id,
            self.saga_type,
            self.status,
            self.started_at,
            self.ended_at,
            duration,
            self.current_step,
            self.retries,
            self.compensations,
            self.updated_at,
            self.reason,
            self.last_error,
        )


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
        self._sagas: dict[str, _Saga] = {}
        self._open_steps: dict[tuple[str, str, int], int] = {}
        self._load_open()
        self._next = {
            (topic, partition): offset
            for topic, partition, offset in self._db.execute(
                'SELECT topic, "partition", next_offset FROM projection_offsets'
            ).fetchall()
        }

    def _load_open(self) -> None:
        for row in self._db.execute(
            f"SELECT {_SAGA_COLUMNS} FROM sagas WHERE status NOT IN (SELECT unnest(?))",
            [list(ENDED)],
        ).fetchall():
            self._sagas[row[0]] = _Saga.of(row)
        for saga_id, step, attempt, commanded in self._db.execute(
            "SELECT saga_id, step, attempt, epoch_ms(commanded_at) FROM steps "
            "WHERE replied_at IS NULL"
        ).fetchall():
            self._open_steps[(saga_id, step, attempt)] = commanded

    def _row(self, saga_id: str) -> _Saga | None:
        """A saga's row as the file has it, to go on from."""
        row = self._db.execute(
            f"SELECT {_SAGA_COLUMNS} FROM sagas WHERE saga_id = ?", [saga_id]
        ).fetchone()
        return None if row is None else _Saga.of(row)

    def next_offset(self, topic: str, partition: int) -> int:
        return int(self._next.get((topic, partition), 0))

    def apply(self, batch: Sequence[Consumed]) -> BatchReport:
        """Write a batch and the positions it consumed in one transaction."""
        events: list[_Event] = []
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
        sagas, steps = self._fold(events)
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
                _upsert(
                    db,
                    "sagas",
                    [
                        self._sagas[s].row(s) if s in self._sagas else sagas[s]
                        for s in sagas
                    ],
                    time_columns=(3, 4, 9),
                )
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
        for saga_id, row in sagas.items():
            if row[2] in ENDED:
                self._sagas.pop(saga_id, None)  # ended: its row is final
        for key, row in steps.items():
            if row[4] is not None:
                self._open_steps.pop(key, None)
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
        events: list[_Event],
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
                    _Event(
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

    def _fold(
        self, events: list[_Event]
    ) -> tuple[dict[str, tuple[Any, ...]], dict[tuple[str, str, int], tuple[Any, ...]]]:
        """The ``sagas`` and ``steps`` rows the batch changes, from the rows of
        sagas still going (kept in memory) and the batch's typed events."""
        sagas: dict[str, tuple[Any, ...]] = {}
        steps: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        for saga_id, _seq, saga_type, at, event, _, _ in events:
            saga = self._sagas.get(saga_id)
            if saga is None:
                # An ended saga's row is final, unless an operator's retry
                # takes a failed saga back up: then it goes on from its row.
                reopened = (
                    None if isinstance(event, SagaStarted) else self._row(saga_id)
                )
                saga = self._sagas[saga_id] = reopened or _Saga(saga_type, at)
            saga.updated_at = at
            error = _error_of(event)
            if error is not None:
                saga.last_error = error
            match event:
                case (
                    StepCommanded(step=step, attempt=attempt)
                    | CompensationCommanded(step=step, attempt=attempt)
                ):
                    saga.current_step = step
                    if attempt > 1:
                        saga.retries += 1
                    if isinstance(event, CompensationCommanded):
                        saga.status = Status.COMPENSATING
                    key = (saga_id, _step_id(event, step), attempt)
                    self._open_steps[key] = at
                    steps[key] = (saga_id, key[1], attempt, at, None, None, None)
                case (
                    StepSucceeded(step=step, attempt=attempt)
                    | StepFailed(step=step, attempt=attempt)
                    | StepTimedOut(step=step, attempt=attempt)
                    | StepCompensated(step=step, attempt=attempt)
                    | CompensationFailed(step=step, attempt=attempt)
                    | CompensationTimedOut(step=step, attempt=attempt)
                ):
                    saga.current_step = step
                    if isinstance(event, StepCompensated):
                        saga.compensations += 1
                    key = (saga_id, _step_id(event, step), attempt)
                    commanded = self._open_steps.get(key)
                    if commanded is not None:
                        steps[key] = (
                            saga_id, key[1], attempt, commanded, at, at - commanded,
                            _ANSWERS[type(event)],
                        )  # fmt: skip
                case RetryRequested():
                    saga.status = Status.COMPENSATING
                    saga.ended_at = saga.reason = None
                case _ if type(event) in OUTCOMES:
                    saga.status = OUTCOMES[type(event)]
                    saga.ended_at = at
                    saga.reason = getattr(event, "reason", None)
            sagas[saga_id] = saga.row(saga_id)
        return sagas, steps

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


class _Event(NamedTuple):
    """One saga event of a batch, typed, with where it sits in its saga's log."""

    saga_id: str
    seq: int
    saga_type: str
    at: int
    event: SagaEvent
    #: Where its log record sits on ``saga.events``.
    partition: int
    offset: int

    @property
    def row(self) -> tuple[Any, ...]:
        """Its ``saga_events`` row (``data`` is the event as JSON)."""
        data = _JSON.encode(self.event).decode()
        tag = TAG_OF[type(self.event)]
        return (
            self.saga_id, self.seq, self.saga_type, tag, self.at, data,
            self.partition, self.offset,
        )  # fmt: skip


_JSON = msgspec.json.Encoder()


def _step_id(event: SagaEvent, step: str) -> str:
    return step + COMPENSATE if isinstance(event, _COMPENSATION) else step


def _error_of(event: SagaEvent) -> str | None:
    """What a step's event says went wrong (``sagas.last_error``; the schema's
    backfill computes the same from ``saga_events``), or ``None``."""
    match event:
        case StepFailed(error=error) | CompensationFailed(error=error):
            return error
        case (
            StepTimedOut(step=step, attempt=attempt)
            | CompensationTimedOut(step=step, attempt=attempt)
        ):
            return f"{_step_id(event, step)} timed out (attempt {attempt})"
    return None


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
