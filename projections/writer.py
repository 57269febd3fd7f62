"""The saga projections in DuckDB, written in batches from the log and the DLQ.

The public schema (notebooks and users rely on these names; columns may be
added, never renamed):

- ``saga_events(saga_id, seq, saga_type, event_type, occurred_at, data)``:
  every saga event, in order (``data`` is the event as JSON).
- ``sagas(saga_id, saga_type, status, started_at, ended_at, duration_ms,
  current_step, retries, compensations)``.
- ``steps(saga_id, step, attempt, commanded_at, replied_at, latency_ms,
  outcome)``; a compensation's step is ``<step>.compensate``.
- ``dead_letters(message_id, saga_id, topic, partition, offset, error,
  attempts, dead_at, payload)``.

A batch and the positions it consumed commit in one transaction
(``projection_offsets``), so a redelivered record is recognised by its
position and skipped; the primary keys make a replay change nothing either.
``sagas`` and ``steps`` are recomputed from ``saga_events`` for the sagas a
batch touched, so they can never disagree with the history.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import msgspec

from actors.history import HistoryCodec
from events.dead_letters import DeadLetterCodec
from events.topics import SAGA_DLQ, SAGA_EVENTS

SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_events (
    saga_id VARCHAR NOT NULL, seq INTEGER NOT NULL, saga_type VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, data JSON,
    PRIMARY KEY (saga_id, seq));
CREATE TABLE IF NOT EXISTS sagas (
    saga_id VARCHAR PRIMARY KEY, saga_type VARCHAR, status VARCHAR,
    started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_ms BIGINT,
    current_step VARCHAR, retries INTEGER, compensations INTEGER);
CREATE TABLE IF NOT EXISTS steps (
    saga_id VARCHAR NOT NULL, step VARCHAR NOT NULL, attempt INTEGER NOT NULL,
    commanded_at TIMESTAMPTZ, replied_at TIMESTAMPTZ, latency_ms BIGINT,
    outcome VARCHAR, PRIMARY KEY (saga_id, step, attempt));
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id VARCHAR, saga_id VARCHAR, topic VARCHAR, "partition" INTEGER,
    "offset" BIGINT, error VARCHAR, attempts INTEGER, dead_at TIMESTAMPTZ,
    payload BLOB, source VARCHAR, dlq_partition INTEGER NOT NULL,
    dlq_offset BIGINT NOT NULL, PRIMARY KEY (dlq_partition, dlq_offset));
CREATE TABLE IF NOT EXISTS projection_offsets (
    topic VARCHAR NOT NULL, "partition" INTEGER NOT NULL, next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, "partition"));
"""

_STATUS = """
CASE arg_max(event_type, seq)
    WHEN 'saga_completed' THEN 'completed'
    WHEN 'saga_compensated' THEN 'compensated'
    WHEN 'saga_rejected' THEN 'rejected'
    WHEN 'saga_failed' THEN 'failed'
    ELSE CASE WHEN count_if(event_type = 'compensation_commanded') > 0
              THEN 'compensating' ELSE 'running' END
END
"""

_TERMINAL = "('saga_completed', 'saga_compensated', 'saga_rejected', 'saga_failed')"

_SAGAS = f"""
INSERT OR REPLACE INTO sagas
SELECT saga_id, any_value(saga_type), {_STATUS},
       min(occurred_at),
       max(occurred_at) FILTER (WHERE event_type IN {_TERMINAL}),
       CAST(epoch_ms(max(occurred_at) FILTER (WHERE event_type IN {_TERMINAL}))
            - epoch_ms(min(occurred_at)) AS BIGINT),
       arg_max(data->>'step', seq) FILTER (WHERE data->>'step' IS NOT NULL),
       CAST(count_if(event_type IN ('step_commanded', 'compensation_commanded')
                     AND CAST(data->>'attempt' AS INTEGER) > 1) AS INTEGER),
       CAST(count_if(event_type = 'step_compensated') AS INTEGER)
FROM saga_events WHERE saga_id IN (SELECT unnest(?)) GROUP BY saga_id
"""

_STEPS = """
INSERT OR REPLACE INTO steps
WITH commanded AS (
    SELECT saga_id,
           (data->>'step') || CASE WHEN event_type = 'compensation_commanded'
                                   THEN '.compensate' ELSE '' END AS step,
           CAST(data->>'attempt' AS INTEGER) AS attempt, occurred_at
    FROM saga_events
    WHERE event_type IN ('step_commanded', 'compensation_commanded')
      AND saga_id IN (SELECT unnest(?))),
answered AS (
    SELECT saga_id,
           (data->>'step') || CASE WHEN event_type LIKE 'compensation_%'
                                     OR event_type = 'step_compensated'
                                   THEN '.compensate' ELSE '' END AS step,
           CAST(data->>'attempt' AS INTEGER) AS attempt,
           min(occurred_at) AS replied_at,
           arg_min(CASE event_type
               WHEN 'step_succeeded' THEN 'succeeded'
               WHEN 'step_compensated' THEN 'succeeded'
               WHEN 'step_failed' THEN 'failed'
               WHEN 'compensation_failed' THEN 'failed'
               ELSE 'timed_out' END, seq) AS outcome
    FROM saga_events
    WHERE event_type IN ('step_succeeded', 'step_failed', 'step_timed_out',
                         'step_compensated', 'compensation_failed',
                         'compensation_timed_out')
      AND saga_id IN (SELECT unnest(?))
    GROUP BY ALL)
SELECT c.saga_id, c.step, c.attempt, c.occurred_at, a.replied_at,
       CAST(epoch_ms(a.replied_at) - epoch_ms(c.occurred_at) AS BIGINT),
       a.outcome
FROM commanded c LEFT JOIN answered a USING (saga_id, step, attempt)
"""


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


#: The tables published for readers, and the order their rows are written in.
PUBLISHED = {
    "saga_events": "saga_id, seq",
    "sagas": "started_at",
    "steps": "commanded_at",
    "dead_letters": "dead_at",
    "projection_offsets": "topic, partition",
}


class ProjectionWriter:
    """Applies batches of consumed records to the projection tables."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        self._db.execute(SCHEMA)
        self._history = HistoryCodec()
        self._letters = DeadLetterCodec()
        self._json = msgspec.json.Encoder()
        self._next = {
            (topic, partition): offset
            for topic, partition, offset in self._db.execute(
                'SELECT topic, "partition", next_offset FROM projection_offsets'
            ).fetchall()
        }

    def next_offset(self, topic: str, partition: int) -> int:
        return int(self._next.get((topic, partition), 0))

    def apply(self, batch: Sequence[Consumed]) -> BatchReport:
        """Write a batch and the positions it consumed in one transaction."""
        events: list[tuple[Any, ...]] = []
        letters: list[tuple[Any, ...]] = []
        positions: dict[tuple[str, int], int] = {}
        skipped = 0
        for item in batch:
            if item.offset < self.next_offset(item.topic, item.partition):
                skipped += 1  # consumed before: a redelivery
                continue
            positions[(item.topic, item.partition)] = item.offset + 1
            if item.topic == SAGA_EVENTS:
                record = self._history.decode(item.value)
                for seq, event in enumerate(record.events, record.seq):
                    tag = msgspec.inspect.type_info(type(event)).tag  # type: ignore[attr-defined]
                    data = self._json.encode(event).decode()
                    events.append(
                        (record.saga_id, seq, record.saga_type, tag, record.at, data)
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
                    )
                )
        if not positions:
            return BatchReport(0, 0, skipped)
        touched = sorted({row[0] for row in events})
        db = self._db
        db.begin()
        try:
            if events:
                columns = [list(c) for c in zip(*events, strict=True)]
                db.execute(
                    "INSERT OR IGNORE INTO saga_events SELECT unnest(?), unnest(?), "
                    "unnest(?), unnest(?), to_timestamp(unnest(?) / 1000), "
                    "CAST(unnest(?) AS JSON)",
                    columns,
                )
                db.execute(_SAGAS, [touched])
                db.execute(_STEPS, [touched, touched])
            if letters:
                columns = [list(c) for c in zip(*letters, strict=True)]
                marks = ", ".join("unnest(?)" for _ in columns)
                db.execute(
                    f"INSERT OR IGNORE INTO dead_letters SELECT {marks}", columns
                )
            db.execute(
                "INSERT OR REPLACE INTO projection_offsets "
                "SELECT unnest(?), unnest(?), unnest(?)",
                [
                    [t for t, _ in positions],
                    [p for _, p in positions],
                    list(positions.values()),
                ],
            )
            db.commit()
        except BaseException:
            db.rollback()
            raise
        self._next.update(positions)
        return BatchReport(len(events), len(letters), skipped)

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


def _quoted(columns: str) -> str:
    return ", ".join(f'"{c.strip()}"' for c in columns.split(","))


#: Upper bounds of the step latency histogram, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StepLatency(NamedTuple):
    step: str
    observations: int
    sum_s: float
    #: Cumulative counts at each bound of :data:`LATENCY_BUCKETS`.
    buckets: list[int]


def step_latencies(db: duckdb.DuckDBPyConnection) -> list[StepLatency]:
    """The step latency histogram, per step, from the ``steps`` table."""
    bounds = ", ".join(
        f"count_if(latency_ms <= {bound * 1000})" for bound in LATENCY_BUCKETS
    )
    rows = db.execute(
        f"SELECT step, count(*), coalesce(sum(latency_ms), 0) / 1000.0, {bounds} "
        "FROM steps WHERE latency_ms IS NOT NULL GROUP BY step ORDER BY step"
    ).fetchall()
    return [
        StepLatency(row[0], int(row[1]), float(row[2]), [int(n) for n in row[3:]])
        for row in rows
    ]
