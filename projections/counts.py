"""Sagas started and ended, how long they took, and the step latencies,
counted from the projection's tables: the metrics endpoint's counters and
histograms.

The tables are the log's fold, kept in a DuckDB file that outlives every
process, so these counts never go back when an actor restarts (per-process
counters would: a killed host took its counts with it). Each saga counts
once when it starts and once per outcome event it logged; an outcome event is
never removed, so the counts only grow while the log does.
"""

from __future__ import annotations

from typing import NamedTuple

import duckdb

from actors.core import OUTCOMES, TAG_OF

#: Upper bounds of the saga duration histogram, in seconds: a saga spans
#: several steps, and step timeouts and retries put it in tens of seconds.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

#: Each outcome event's ``event_type`` and the outcome it stands for.
_OUTCOME_OF = {TAG_OF[cls]: outcome for cls, outcome in OUTCOMES.items()}


class SagaDurations(NamedTuple):
    """The sagas of one type that ended with one outcome."""

    saga_type: str
    outcome: str
    observations: int
    sum_s: float
    #: Cumulative counts at each bound of :data:`DURATION_BUCKETS`.
    buckets: list[int]


class SagaCounts(NamedTuple):
    #: Sagas started, by type.
    started: dict[str, int]
    #: Sagas ended, by type and outcome, with their durations.
    ended: list[SagaDurations]


def saga_counts(db: duckdb.DuckDBPyConnection) -> SagaCounts:
    """Started per type; ended per type and outcome, from each outcome event
    and its saga's start."""
    started = dict(
        db.execute(
            "SELECT saga_type, count(*) FROM sagas GROUP BY saga_type ORDER BY 1"
        ).fetchall()
    )
    bounds = ", ".join(f"count_if(seconds <= {bound})" for bound in DURATION_BUCKETS)
    tags = ", ".join(f"'{tag}'" for tag in _OUTCOME_OF)
    rows = db.execute(
        f"""
        SELECT saga_type, event_type, count(*), coalesce(sum(seconds), 0), {bounds}
        FROM (
            SELECT e.saga_type, e.event_type,
                   greatest(epoch_ms(e.occurred_at) - epoch_ms(s.started_at), 0)
                       / 1000.0 AS seconds
            FROM saga_events e JOIN sagas s USING (saga_id)
            WHERE e.event_type IN ({tags})
        )
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    return SagaCounts(
        started={t: int(n) for t, n in started.items()},
        ended=[
            SagaDurations(
                row[0],
                _OUTCOME_OF[row[1]],
                int(row[2]),
                float(row[3]),
                [int(n) for n in row[4:]],
            )
            for row in rows
        ],
    )


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
