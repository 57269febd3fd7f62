"""`saga status`'s numbers over a run whose span is known: throughput over
the span the data covers, rejections apart from errors, the sagas in flight
per step and the oldest of them, and the counts the metrics endpoint serves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors.app.cli.status import lag_lines, status_text
from projections.counts import DURATION_BUCKETS, saga_counts
from projections.reader import open_projections
from projections.status import status
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run, reply_to
from tests.projections.test_status import published
from tests.projections.test_writer import golden_batch

T0 = 1_700_000_000_000
#: Sagas that complete, one every 10 ms, each 130 ms after it started.
BURST = 200


def burst() -> list[Consumed]:
    """``BURST`` completed sagas over 2.12 s; one saga waiting for its user
    check since T0 + 5 ms, two for their payment since T0 + 100/200 ms."""
    runs = []
    for i in range(BURST):
        run = Run(f"c-{i:03}")
        start = T0 + 10 * i
        run.start(now=start)
        run.feed(reply_to(run.sent[-1], start + 40))
        run.feed(reply_to(run.sent[-1], start + 90, paymentId=f"p-{i}"))
        run.feed(reply_to(run.sent[-1], start + 130, balance=1250))
        runs.append(run)
    waiting = Run("w-verify")
    waiting.start(now=T0 + 5)
    runs.append(waiting)
    for start in (T0 + 100, T0 + 200):
        paying = Run(f"w-pay-{start - T0}")
        paying.start(now=start)
        paying.feed(reply_to(paying.sent[-1], start + 40))
        runs.append(paying)
    return [
        Consumed("saga.events", 0, offset, raw)
        for offset, raw in enumerate(raw for run in runs for raw in run.log)
    ]


@pytest.fixture
def report(tmp_path: Path) -> dict[str, object]:
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(burst())
    writer.publish(tmp_path / "projections")
    db.close()
    return status(open_projections(tmp_path / "projections"))


def test_throughput_is_over_the_span_of_the_data_when_shorter(
    report: dict[str, object],
) -> None:
    span = 2.12  # the first saga's start to the last one's end
    assert report["span_s"] == pytest.approx(span)
    assert report["throughput_over_s"] == {"1m": span, "5m": span}
    # Not 200 / 60: the run lasted 2.12 s.
    assert report["throughput_per_s"] == {
        "1m": pytest.approx(BURST / span, abs=1e-3),
        "5m": pytest.approx(BURST / span, abs=1e-3),
    }
    text = status_text({**report, "projection": {"published_age_s": 0.0}})
    assert "throughput   94.3/s (over 2.1 s, all the data)" in text.splitlines()


def test_in_flight_per_step_and_the_oldest(report: dict[str, object]) -> None:
    before = time.time()
    flight = report["in_flight"]
    assert isinstance(flight, dict)
    assert flight["total"] == 3
    assert flight["by_step"] == [
        {"saga_type": "deposit", "status": "running", "step": "process_payment",
         "count": 2},
        {"saga_type": "deposit", "status": "running", "step": "verify_user",
         "count": 1},
    ]  # fmt: skip
    oldest = flight["oldest"]
    assert {k: oldest[k] for k in ("saga_id", "status", "step")} == {
        "saga_id": "w-verify",
        "status": "running",
        "step": "verify_user",
    }
    # Its age is measured to now: since T0 + 5 ms, on the wall clock.
    assert oldest["age_s"] == pytest.approx(before - (T0 + 5) / 1000, abs=60)


def test_rejections_are_outcomes_and_failures_errors(tmp_path: Path) -> None:
    """The golden sagas: 2 completed, 1 compensated, 1 rejected, 1 failed."""
    report = status(open_projections(published(tmp_path) / "projections"))
    assert report["ended"] == 5
    assert report["error_rate"] == 0.2  # failed only
    assert report["rejection_rate"] == 0.2
    lines = status_text({**report, "projection": {"published_age_s": 0.0}}).splitlines()
    assert "outcomes     rejected 20.0%, compensated 20.0% of 5 ended" in lines
    assert "errors       failed 20.0% of 5 ended" in lines


def test_unknown_numbers_print_as_a_dash(tmp_path: Path) -> None:
    """Nothing ended yet: no latency, no rate, in JSON null and in text -."""
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    run = Run("only")
    run.start(now=T0)
    writer.apply([Consumed("saga.events", 0, 0, run.log[0])])
    writer.publish(tmp_path / "projections")
    db.close()
    report = status(open_projections(tmp_path / "projections"))
    assert report["saga_latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert report["error_rate"] is None and report["ended"] == 0
    # One event: the data spans no time, so there is no rate to give.
    assert report["throughput_per_s"] == {"1m": None, "5m": None}
    lines = status_text({**report, "projection": {"published_age_s": 0.0}})
    assert "saga latency p50 -, p95 -, p99 - ms" in lines.splitlines()
    assert "errors       failed - of 0 ended" in lines.splitlines()
    assert "throughput   -/s (1 min), -/s (5 min)" in lines.splitlines()


def test_counts_for_the_metrics_come_from_outcome_events(tmp_path: Path) -> None:
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(burst())
    counts = saga_counts(db)
    assert counts.started == {"deposit": BURST + 3}
    [completed] = counts.ended
    assert (completed.saga_type, completed.outcome) == ("deposit", "completed")
    assert completed.observations == BURST
    assert completed.sum_s == pytest.approx(BURST * 0.13)
    # Every saga took 130 ms: none within 0.1 s, all within 0.25 s.
    assert completed.buckets == [0] + [BURST] * (len(DURATION_BUCKETS) - 1)
    db.close()


def test_each_outcome_is_counted(tmp_path: Path) -> None:
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(golden_batch())
    counts = saga_counts(db)
    db.close()
    assert counts.started == {"deposit": 5}
    assert {e.outcome: e.observations for e in counts.ended} == {
        "completed": 2,
        "compensated": 1,
        "rejected": 1,
        "failed": 1,
    }


def test_a_line_per_group_says_where_it_never_committed() -> None:
    def lag(group: str, partition: int, committed: int | None, lag: int) -> dict:
        return {"group": group, "topic": "t", "partition": partition,
                "committed": committed, "end": 9, "lag": lag}  # fmt: skip

    lines = lag_lines(
        [
            lag("saga-orchestrator", 0, 9, 0),
            lag("saga-orchestrator", 1, 9, 0),
            lag("user-service", 0, None, 9),
            lag("user-service", 1, 2, 7),
        ]
    )
    assert lines == [
        "lag          saga-orchestrator                0",
        "lag          user-service                    16 (never committed on 1 of "
        "2 partitions)",
    ]


def test_sagas_started_and_none_ended_yet_read_as_nothing_to_measure(
    tmp_path: Path,
) -> None:
    """Early in a run: events span time, yet no saga has ended: no throughput
    to divide, and the text says so instead of failing."""
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    runs = []
    for i, start in enumerate((T0, T0 + 300)):
        run = Run(f"early-{i}")
        run.start(now=start)
        run.feed(reply_to(run.sent[-1], start + 40))
        runs.append(run)
    writer.apply(
        [
            Consumed("saga.events", 0, offset, raw)
            for offset, raw in enumerate(raw for run in runs for raw in run.log)
        ]
    )
    writer.publish(tmp_path / "projections")
    db.close()
    report = status(open_projections(tmp_path / "projections"))
    assert report["ended"] == 0
    assert report["throughput_per_s"] == {"1m": 0.0, "5m": 0.0}
    report["projection"] = {"published_age_s": 0.0}
    assert "in flight" in status_text(report)
