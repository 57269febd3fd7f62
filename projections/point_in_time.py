"""Point-in-time SQL: every saga's state as of a time or a log offset.

``saga_events`` holds each saga's whole history, so its state at any moment
is the fold of the events decided by then. These table macros do that fold in
SQL, by the rules :func:`actors.core.evolve` applies (a test checks the two
agree at every record of many histories)::

    SELECT * FROM saga_state_at(TIMESTAMPTZ '2026-11-27 14:03:07+00');
    SELECT * FROM saga_state_at('s-42', TIMESTAMPTZ '2026-11-27 14:03:07+00');
    SELECT * FROM saga_state_at_offset(3, 1200);  -- partition 3, offset 1200
    SELECT * FROM log_position_at(TIMESTAMPTZ '2026-11-27 14:03:07+00');

A state row: ``saga_id, saga_type, version, status, step, attempt,
pending_command`` (the messageId of the command the saga waits on, NULL when
it waits on none: ended, or between attempts), ``deadline`` (when it acts
unprompted: a reply is overdue, or with ``retrying`` the next attempt goes
out), ``retrying``, ``held`` (the origin of the dead letter it is held
behind), ``reason``, ``seq`` (events applied), ``as_of`` (its newest event's
time) and ``partition``, ``offset`` (where its newest record sits on
``saga.events``: join them with ``saga_events`` or a dead letter's
``saga_id``). ``log_position_at`` says, per partition of ``saga.events``, the
offset consumed up to (``next_offset``) by then.

A time is a decision's time as the engine logged it (``occurred_at``); an
offset bound includes the record at that offset. The macros are created in
the projection writer's file and in every reader's connection
(:func:`projections.reader.open_projections`).
"""

from __future__ import annotations

from typing import Final

import duckdb

_COMMANDED: Final = "('step_commanded', 'compensation_commanded')"
#: Events that set the deadline to their retry time (or none): ``_waiting``.
_WAITING: Final = "('step_timed_out', 'compensation_timed_out', 'compensation_failed')"
_ENDED: Final = "('saga_compensated', 'saga_rejected', 'saga_failed')"
_ABANDONED: Final = (
    "(event_type = 'cancel_requested' AND coalesce(data->>'$.abandoned', '') <> '')"
)

#: The fold, over the events ``{where}`` keeps; one ``arg_max`` per field of
#: the state, each over the events that set that field, newest (by seq) wins.
_FOLD: Final = f"""
SELECT
    saga_id,
    any_value(saga_type) AS saga_type,
    coalesce(arg_max(
        CASE WHEN event_type = 'saga_started'
             THEN coalesce(CAST(data->>'$.version' AS INTEGER), 1)
             ELSE CAST(data->>'$.toVersion' AS INTEGER) END, seq)
        FILTER (WHERE event_type IN ('saga_started', 'definition_moved')), 1)
        AS version,
    arg_max(
        CASE event_type
            WHEN 'saga_started' THEN 'running'
            WHEN 'compensation_commanded' THEN 'compensating'
            WHEN 'retry_requested' THEN 'compensating'
            WHEN 'saga_completed' THEN 'completed'
            WHEN 'saga_compensated' THEN 'compensated'
            WHEN 'saga_rejected' THEN 'rejected'
            WHEN 'saga_failed' THEN 'failed' END, seq)
        FILTER (WHERE event_type IN ('saga_started', 'compensation_commanded',
            'retry_requested', 'saga_completed', 'saga_compensated',
            'saga_rejected', 'saga_failed')) AS _status,
    coalesce(arg_max(data->>'$.step', seq)
        FILTER (WHERE event_type IN {_COMMANDED}), '') AS step,
    coalesce(arg_max(CAST(data->>'$.attempt' AS INTEGER), seq)
        FILTER (WHERE event_type IN {_COMMANDED}), 0) AS attempt,
    coalesce(arg_max(
        CASE WHEN event_type IN {_COMMANDED}
                 THEN CAST(data->>'$.deadline' AS BIGINT)
             WHEN event_type IN {_WAITING}
                 THEN coalesce(CAST(data->>'$.retryAt' AS BIGINT), 0)
             ELSE 0 END, seq)
        FILTER (WHERE event_type IN {_COMMANDED} OR event_type IN {_WAITING}
            OR event_type IN {_ENDED} OR {_ABANDONED}
            OR event_type IN ('step_succeeded', 'step_failed',
                'step_compensated', 'saga_completed')), 0) AS _deadline,
    coalesce(arg_max(
        event_type IN {_WAITING} AND data->>'$.retryAt' IS NOT NULL, seq)
        FILTER (WHERE event_type IN {_COMMANDED} OR event_type IN {_WAITING}
            OR event_type IN {_ENDED} OR {_ABANDONED}), false) AS retrying,
    -- arg_max passes over NULLs: a release is '' until the end.
    nullif(arg_max(
        CASE WHEN event_type = 'saga_held' THEN data->>'$.origin' ELSE '' END, seq)
        FILTER (WHERE event_type IN ('saga_held', 'hold_released')), '') AS held,
    coalesce(arg_max(
        CASE event_type
            WHEN 'step_failed' THEN data->>'$.error'
            WHEN 'compensation_failed' THEN data->>'$.error'
            WHEN 'cancel_requested' THEN 'cancelled: ' || (data->>'$.reason')
            WHEN 'retry_requested' THEN 'retried: ' || (data->>'$.reason')
            ELSE data->>'$.reason' END, seq)
        FILTER (WHERE event_type IN ('step_failed', 'compensation_failed',
            'retry_requested') OR event_type IN {_ENDED} OR {_ABANDONED}), '')
        AS reason,
    max(seq) AS seq,
    max(occurred_at) AS as_of,
    arg_max("partition", seq) AS "partition",
    arg_max("offset", seq) AS "offset"
FROM saga_events
WHERE {{where}}
GROUP BY saga_id
"""

#: The fold's rows in the order of the state's columns, with the command the
#: saga waits on (``actors.core.pending_command``'s messageId).
_STATE: Final = """
SELECT saga_id, saga_type, version, _status AS status, step, attempt,
    CASE WHEN _status IN ('running', 'compensating') AND NOT retrying
              AND _deadline <> 0
         THEN saga_id || ':' || step
              || CASE WHEN _status = 'compensating' THEN '.compensate' ELSE '' END
              || ':' || attempt END AS pending_command,
    CASE WHEN _deadline <> 0 THEN to_timestamp(_deadline / 1000) END AS deadline,
    retrying, held, reason, seq, as_of, "partition", "offset"
FROM ({fold})
"""


def _state(where: str) -> str:
    # In parentheses: a FROM list would take an overload's parameters after
    # the comma for another table.
    return "(" + _STATE.format(fold=_FOLD.format(where=where)) + ")"


_UNTIL: Final = "occurred_at <= CAST(ts AS TIMESTAMPTZ)"

MACROS: Final = f"""
CREATE OR REPLACE MACRO saga_state_at(ts) AS TABLE {_state(_UNTIL)},
    (saga, ts) AS TABLE {_state(f"saga_id = saga AND {_UNTIL}")};
CREATE OR REPLACE MACRO saga_state_at_offset(log_partition, log_offset) AS TABLE
    {_state('"partition" = log_partition AND "offset" <= log_offset')};
CREATE OR REPLACE MACRO log_position_at(ts) AS TABLE
    SELECT "partition", max("offset") + 1 AS next_offset,
        max(occurred_at) AS last_at
    FROM saga_events WHERE {_UNTIL} AND "partition" IS NOT NULL
    GROUP BY "partition" ORDER BY "partition";
"""


def install(db: duckdb.DuckDBPyConnection) -> None:
    """Create the point-in-time macros on ``db`` (over its ``saga_events``)."""
    db.execute(MACROS)
