"""What `saga status` and `saga history` report, read from published projections."""

from __future__ import annotations

from typing import Any

import duckdb

from projections.reader import columns_of
from projections.rows import ENDED

_ENDED = "(" + ", ".join(f"'{status}'" for status in ENDED) + ")"


#: The throughput windows, in seconds, by name.
WINDOWS = {"1m": 60, "5m": 300}


def status(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Sagas per status and type, throughput, latencies, rates, dead letters,
    the sagas in flight, the partitions' owners.

    Throughput is over each window ending at the newest event, or over the
    span the data covers when that is shorter: a run of 2 s reads its own
    rate, not its count over a minute. ``error_rate`` counts the ``failed``
    sagas only (a person must look); ``rejection_rate`` the ``rejected``
    ones, a business outcome (a blocked user, a limit), not an error. A
    latency or rate with nothing to measure is ``None``."""
    by_status = db.execute(
        "SELECT saga_type, status, count(*) FROM sagas GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    newest, span = db.execute(
        "SELECT coalesce(max(occurred_at), now()), "
        "epoch_ms(max(occurred_at)) - epoch_ms(min(occurred_at)) FROM saga_events"
    ).fetchone() or (None, None)
    span_s = None if span is None else span / 1000
    over = {
        name: None if not span_s else min(float(seconds), span_s)
        for name, seconds in WINDOWS.items()
    }
    window = db.execute(
        f"""
        SELECT coalesce(count_if(ended_at >= ?::TIMESTAMPTZ - INTERVAL 1 MINUTE), 0),
               coalesce(count_if(ended_at >= ?::TIMESTAMPTZ - INTERVAL 5 MINUTE), 0),
               quantile_cont(duration_ms, 0.50), quantile_cont(duration_ms, 0.95),
               quantile_cont(duration_ms, 0.99),
               count_if(status = 'failed') / nullif(count(*), 0),
               count_if(status = 'rejected') / nullif(count(*), 0),
               count_if(status = 'compensated') / nullif(count(*), 0),
               count(*)
        FROM sagas WHERE status IN {_ENDED}
        """,
        [newest, newest],
    ).fetchone()
    steps = db.execute(
        "SELECT quantile_cont(latency_ms, 0.50), quantile_cont(latency_ms, 0.95), "
        "quantile_cont(latency_ms, 0.99) FROM steps WHERE latency_ms IS NOT NULL"
    ).fetchone()
    (dead,) = db.execute("SELECT count(*) FROM dead_letters").fetchone() or (0,)
    assert window is not None and steps is not None
    return {
        "sagas": [{"saga_type": t, "status": s, "count": n} for t, s, n in by_status],
        # Windows end at the newest event, so a finished run still reads true.
        "throughput_per_s": {
            name: None if not over[name] else round(n / over[name], 3)
            for name, n in zip(WINDOWS, window[:2], strict=True)
        },
        # The seconds each rate is over: its window, or the span if shorter.
        "throughput_over_s": over,
        "span_s": span_s,
        "newest_event_at": None if span is None else newest.isoformat(),
        "saga_latency_ms": {"p50": window[2], "p95": window[3], "p99": window[4]},
        "step_latency_ms": {"p50": steps[0], "p95": steps[1], "p99": steps[2]},
        "ended": window[8],
        "error_rate": window[5],
        "rejection_rate": window[6],
        "compensation_rate": window[7],
        "dead_letters": dead,
        "letters": letters(db),
        "held": held(db),
        "in_flight": in_flight(db),
        "owners": owners(db),
    }


#: A letter's error with what differs between sagas masked (its sagaId,
#: numbers): ``events.transport.dlq.error_kind`` in SQL.
_ERROR_KIND = (
    "left(regexp_replace(CASE WHEN saga_id IS NULL OR saga_id = '' THEN error "
    "ELSE replace(error, saga_id, '<saga>') END, '[0-9]+', 'N', 'g'), 120)"
)


def letters(db: duckdb.DuckDBPyConnection, top: int = 5) -> dict[str, Any]:
    """The open dead letters (none replayed or resolved yet), and how many of
    them died of each error, most first (the ``top`` ones)."""
    acted = (
        "SELECT dlq_partition, dlq_offset FROM dead_letter_actions"
        if columns_of(db, "dead_letter_actions")
        else "SELECT NULL::INTEGER, NULL::BIGINT WHERE false"
    )
    rows = db.execute(
        f"""
        SELECT {_ERROR_KIND} AS kind, count(*) FROM dead_letters
        WHERE (dlq_partition, dlq_offset) NOT IN ({acted})
        GROUP BY kind ORDER BY count(*) DESC, kind
        """
    ).fetchall()
    return {
        "open": sum(n for _, n in rows),
        "by_error": [{"error": kind, "letters": n} for kind, n in rows[:top]],
    }


def held(db: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The sagas held behind a dead letter now (a ``saga_held`` not released
    since), and the replies they hold."""
    row = db.execute(
        """
        WITH marks AS (
            SELECT saga_id,
                   max(seq) FILTER (WHERE event_type = 'saga_held') AS held_at,
                   coalesce(max(seq) FILTER (WHERE event_type = 'hold_released'),
                            0) AS released_at
            FROM saga_events WHERE event_type IN ('saga_held', 'hold_released')
            GROUP BY saga_id
        )
        SELECT count(DISTINCT e.saga_id),
               count(*) FILTER (WHERE e.event_type = 'reply_held')
        FROM saga_events e JOIN marks m USING (saga_id)
        WHERE m.held_at > m.released_at AND e.seq >= m.held_at
        """
    ).fetchone()
    sagas, replies = row if row is not None else (0, 0)
    return {"sagas": sagas, "replies": replies}


def in_flight(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The sagas not ended: how many per type, status and current step (the
    step being run, or undone while compensating), and the oldest of them
    with its age now (``None`` when none is in flight)."""
    rows = db.execute(
        f"""
        SELECT saga_type, status, current_step, count(*)
        FROM sagas WHERE status NOT IN {_ENDED}
        GROUP BY ALL ORDER BY count(*) DESC, saga_type, status, current_step
        """
    ).fetchall()
    oldest = db.execute(
        f"""
        SELECT saga_id, saga_type, status, current_step, started_at,
               epoch_ms(now()) - epoch_ms(started_at)
        FROM sagas WHERE status NOT IN {_ENDED}
        ORDER BY started_at, saga_id LIMIT 1
        """
    ).fetchone()
    return {
        "total": sum(row[3] for row in rows),
        "by_step": [
            {"saga_type": t, "status": s, "step": step, "count": n}
            for t, s, step, n in rows
        ],
        "oldest": None
        if oldest is None
        else {
            "saga_id": oldest[0],
            "saga_type": oldest[1],
            "status": oldest[2],
            "step": oldest[3],
            "started_at": oldest[4].isoformat(),
            "age_s": round(oldest[5] / 1000, 3),
        },
    }


def owners(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Who owns the partitions of ``saga.events`` as the claims the projection
    read say: per owner (a host's Ray name; ``None`` for partitions whose
    epoch the projection took from a record, the claim unread), the node of
    its newest claim, its partitions, their epochs and its newest claim's
    time; and the replaced owners' records fenced. No hosts before any claim
    (a log from before claims, a fresh platform)."""
    columns = columns_of(db, "partition_owners")
    if not columns:
        return {
            "hosts": [],
            "fenced_records": 0,
            "note": "not published (a projection writer from before ownership claims)",
        }
    # A table published before claims named their node has no such column.
    table = (
        "partition_owners"
        if "node" in columns
        else "(SELECT *, NULL::VARCHAR AS node FROM partition_owners)"
    )
    rows = db.execute(
        f"""
        SELECT owner, coalesce(arg_max(node, claimed_at), any_value(node)),
               list("partition" ORDER BY "partition"), min(epoch), max(epoch),
               max(claimed_at)
        FROM {table} GROUP BY owner ORDER BY owner NULLS LAST
        """
    ).fetchall()
    (fenced,) = db.execute(
        f"SELECT coalesce(sum(fenced_records), 0) FROM {table}"
    ).fetchone() or (0,)
    return {
        "hosts": [
            {
                "owner": owner,
                "node": node,
                "partitions": partitions,
                "min_epoch": low,
                "max_epoch": high,
                "claimed_at": None if newest is None else newest.isoformat(),
            }
            for owner, node, partitions, low, high, newest in rows
        ],
        "fenced_records": int(fenced),
    }


def history(db: duckdb.DuckDBPyConnection, saga_id: str) -> list[dict[str, Any]]:
    """A saga's events in order, each with its time since the saga started."""
    rows = db.execute(
        """
        SELECT seq, event_type, occurred_at,
               epoch_ms(occurred_at) - epoch_ms(first_value(occurred_at)
                   OVER (ORDER BY seq)) AS since_start_ms,
               data
        FROM saga_events WHERE saga_id = ? ORDER BY seq
        """,
        [saga_id],
    ).fetchall()
    return [
        {
            "seq": seq,
            "event_type": event_type,
            "occurred_at": occurred_at.isoformat(),
            "since_start_ms": since,
            "data": data,
        }
        for seq, event_type, occurred_at, since, data in rows
    ]
