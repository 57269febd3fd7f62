"""The projection tables' schema, and bringing an older file up to it.

The public schema only grows: a column is added at the end of its table,
never renamed or moved. A file an older writer made gets the new columns
(``ALTER TABLE ... ADD COLUMN``) when a newer writer opens it, and the rows it
already holds get their values from ``saga_events``, so a saga that ended
before the upgrade is found by the new columns like any other.
"""

from __future__ import annotations

from typing import Final

import duckdb

from projections.point_in_time import install

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS saga_events (
    saga_id VARCHAR NOT NULL, seq INTEGER NOT NULL, saga_type VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, data JSON,
    "partition" INTEGER, "offset" BIGINT, PRIMARY KEY (saga_id, seq));
CREATE TABLE IF NOT EXISTS sagas (
    saga_id VARCHAR PRIMARY KEY, saga_type VARCHAR, status VARCHAR,
    started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_ms BIGINT,
    current_step VARCHAR, retries INTEGER, compensations INTEGER,
    updated_at TIMESTAMPTZ, reason VARCHAR, last_error VARCHAR);
CREATE TABLE IF NOT EXISTS steps (
    saga_id VARCHAR NOT NULL, step VARCHAR NOT NULL, attempt INTEGER NOT NULL,
    commanded_at TIMESTAMPTZ, replied_at TIMESTAMPTZ, latency_ms BIGINT,
    outcome VARCHAR, PRIMARY KEY (saga_id, step, attempt));
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id VARCHAR, saga_id VARCHAR, topic VARCHAR, "partition" INTEGER,
    "offset" BIGINT, error VARCHAR, attempts INTEGER, dead_at TIMESTAMPTZ,
    payload BLOB, source VARCHAR, dlq_partition INTEGER NOT NULL,
    dlq_offset BIGINT NOT NULL, "key" VARCHAR, payload_size INTEGER,
    saga_type VARCHAR, step VARCHAR, saga_status VARCHAR,
    PRIMARY KEY (dlq_partition, dlq_offset));
CREATE TABLE IF NOT EXISTS dead_letter_actions (
    dlq_partition INTEGER NOT NULL, dlq_offset BIGINT NOT NULL, state VARCHAR,
    "at" TIMESTAMPTZ, operator VARCHAR, reason VARCHAR, sent VARCHAR,
    actions_partition INTEGER NOT NULL, actions_offset BIGINT NOT NULL,
    PRIMARY KEY (actions_partition, actions_offset));
CREATE TABLE IF NOT EXISTS projection_offsets (
    topic VARCHAR NOT NULL, "partition" INTEGER NOT NULL, next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, "partition"));
"""

#: Columns added since the first release, per table, in the order they were
#: added (the order ``SCHEMA`` creates them in).
ADDED: Final = {
    # Where each event's log record sits on saga.events (NULL in a file from
    # before: the rows of an older writer cannot learn it).
    "saga_events": (
        ("partition", "INTEGER"),
        ("offset", "BIGINT"),
    ),
    "sagas": (
        ("updated_at", "TIMESTAMPTZ"),
        ("reason", "VARCHAR"),
        ("last_error", "VARCHAR"),
    ),
    "dead_letters": (
        ("key", "VARCHAR"),
        ("payload_size", "INTEGER"),
        ("saga_type", "VARCHAR"),
        ("step", "VARCHAR"),
        ("saga_status", "VARCHAR"),
    ),
}

#: The error a step's events leave on its saga, as the writer's fold sets
#: ``sagas.last_error``: a refusal's text, or a timeout named with its step.
_LAST_ERROR: Final = """
    CASE WHEN event_type IN ('step_failed', 'compensation_failed')
         THEN data->>'$.error'
         WHEN event_type IN ('step_timed_out', 'compensation_timed_out')
         THEN (data->>'$.step')
              || CASE WHEN event_type = 'compensation_timed_out'
                      THEN '.compensate' ELSE '' END
              || ' timed out (attempt ' || (data->>'$.attempt') || ')'
    END"""

_BACKFILL: Final = f"""
UPDATE sagas SET updated_at = e.updated_at, reason = e.reason,
    last_error = e.last_error
FROM (
    SELECT saga_id, max(occurred_at) AS updated_at,
        arg_max(data->>'$.reason', seq)
            FILTER (WHERE data->>'$.reason' IS NOT NULL) AS reason,
        arg_max({_LAST_ERROR}, seq)
            FILTER (WHERE {_LAST_ERROR} IS NOT NULL) AS last_error
    FROM saga_events GROUP BY saga_id
) AS e
WHERE sagas.saga_id = e.saga_id
"""


def migrate(db: duckdb.DuckDBPyConnection) -> None:
    """Create the tables, or add what an older writer's file lacks, and the
    point-in-time macros over them."""
    db.execute(SCHEMA)
    for table, columns in ADDED.items():
        have = {
            name
            for (name,) in db.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = ?",
                [table],
            ).fetchall()
        }
        missing = [(name, kind) for name, kind in columns if name not in have]
        for name, kind in missing:
            db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
        if table == "sagas" and missing:
            db.execute(_BACKFILL)
    install(db)
