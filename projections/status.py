"""What `saga status` and `saga history` report, read from published projections."""

from __future__ import annotations

from typing import Any

import duckdb

from projections.reader import columns_of
from projections.writer import ENDED

_ENDED = "(" + ", ".join(f"'{status}'" for status in ENDED) + ")"


def status(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Sagas per status and type, throughput, latencies, rates, dead letters,
    the partitions' owners."""
    by_status = db.execute(
        "SELECT saga_type, status, count(*) FROM sagas GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    (newest,) = db.execute(
        "SELECT coalesce(max(occurred_at), now()) FROM saga_events"
    ).fetchone() or (None,)
    window = db.execute(
        f"""
        SELECT count_if(ended_at >= ?::TIMESTAMPTZ - INTERVAL 1 MINUTE) / 60.0,
               count_if(ended_at >= ?::TIMESTAMPTZ - INTERVAL 5 MINUTE) / 300.0,
               quantile_cont(duration_ms, 0.50), quantile_cont(duration_ms, 0.95),
               quantile_cont(duration_ms, 0.99),
               count_if(status IN ('rejected', 'failed')) / greatest(count(*), 1),
               count_if(status = 'compensated') / greatest(count(*), 1)
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
        "throughput_per_s": {"1m": window[0], "5m": window[1]},
        "saga_latency_ms": {"p50": window[2], "p95": window[3], "p99": window[4]},
        "step_latency_ms": {"p50": steps[0], "p95": steps[1], "p99": steps[2]},
        "error_rate": window[5],
        "compensation_rate": window[6],
        "dead_letters": dead,
        "owners": owners(db),
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
