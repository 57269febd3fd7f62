"""The projection tables from the golden histories, on a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run
from tests.actors.core.test_golden import SCENARIOS

#: The golden sagas every projection test reads (the operator's cancel and
#: retry have a test of their own below).
BATCH = ("completed", "compensated", "in_doubt", "rejected", "retried_then_failed")


def golden_batch() -> list[Consumed]:
    batch = []
    for name in BATCH:
        script, _ = SCENARIOS[name]
        run = Run(saga_id=f"g-{name}")
        script(run)
        base = len(batch)
        batch.extend(
            Consumed("saga.events", 0, base + i, raw) for i, raw in enumerate(run.log)
        )
    letter = DeadLetter(
        topic="user.events.verify",
        partition=2,
        offset=9,
        error="not JSON",
        dead_at=datetime(2026, 11, 25, tzinfo=UTC),
        source="saga-host",
        payload=b"{oops",
        payload_size=5,
    )
    batch.append(Consumed("saga.dlq", 2, 0, DeadLetterCodec().encode(letter)))
    return batch


def test_tables_follow_the_history_and_a_replay_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "projections.duckdb"
    db = open_store(path)
    writer = ProjectionWriter(db)
    batch = golden_batch()
    first = writer.apply(batch)
    assert first.events == 54  # every event of the five golden sagas
    assert first.dead_letters == 1
    statuses = dict(db.execute("SELECT saga_id, status FROM sagas").fetchall())
    assert statuses == {
        "g-completed": "completed",
        "g-compensated": "compensated",
        "g-rejected": "rejected",
        "g-retried_then_failed": "failed",
        "g-in_doubt": "completed",
    }
    row = db.execute(
        "SELECT duration_ms, retries, compensations, current_step FROM sagas "
        "WHERE saga_id = 'g-compensated'"
    ).fetchone()
    assert row == (170, 0, 1, "process_payment")
    steps = db.execute(
        "SELECT step, attempt, latency_ms, outcome FROM steps "
        "WHERE saga_id = 'g-retried_then_failed' ORDER BY commanded_at"
    ).fetchall()
    assert steps[:3] == [
        ("verify_user", 1, 40, "succeeded"),
        ("process_payment", 1, 10_000, "timed_out"),
        ("process_payment", 2, 100, "succeeded"),
    ]
    assert steps[-1][0] == "process_payment.compensate"
    before = db.execute("SELECT count(*) FROM saga_events").fetchone()

    again = writer.apply(batch)  # a redelivery of everything
    assert (again.events, again.dead_letters, again.skipped) == (0, 0, len(batch))
    assert db.execute("SELECT count(*) FROM saga_events").fetchone() == before
    db.close()

    # A new writer (after a restart) knows what was consumed from the file.
    db = open_store(path)
    restarted = ProjectionWriter(db)
    assert restarted.next_offset("saga.events", 0) == len(batch) - 1
    assert restarted.apply(batch).skipped == len(batch)
    letters = db.execute(
        'SELECT topic, "partition", "offset", error, payload FROM dead_letters'
    ).fetchall()
    assert letters == [("user.events.verify", 2, 9, "not JSON", b"{oops")]
    db.close()


def test_a_failed_saga_retried_goes_on_from_its_row(tmp_path: Path) -> None:
    """An operator's retry takes a failed saga back up after its row was
    final: the row goes on (same start, its retries), with or without a
    restart of the writer in between."""
    script, _ = SCENARIOS["failed_then_retried"]
    run = Run(saga_id="g-retry")
    script(run)
    batch = [Consumed("saga.events", 0, i, raw) for i, raw in enumerate(run.log)]
    failed_at = next(i for i, raw in enumerate(run.log) if b"saga_failed" in raw)
    query = (
        "SELECT status, epoch_ms(started_at), duration_ms, retries, compensations "
        "FROM sagas"
    )
    rows = []
    for restart in (False, True):
        db = open_store(tmp_path / f"retry-{restart}.duckdb")
        writer = ProjectionWriter(db)
        writer.apply(batch[: failed_at + 1])
        assert db.execute("SELECT status FROM sagas").fetchone() == ("failed",)
        if restart:
            db.close()
            db = open_store(tmp_path / f"retry-{restart}.duckdb")
            writer = ProjectionWriter(db)
        writer.apply(batch[failed_at + 1 :])
        rows.append(db.execute(query).fetchall())
        db.close()
    [(status, started, duration, retries, compensations)] = rows[0]
    assert rows[1] == rows[0]
    assert status == "compensated" and started == run.records()[0].at
    assert duration == run.records()[-1].at - started
    assert (retries, compensations) == (4, 1)


def test_a_restart_mid_history_gives_the_same_tables(tmp_path: Path) -> None:
    """Rows of sagas still going are rebuilt from the tables after a restart."""
    batch = golden_batch()
    tables = "SELECT * FROM sagas ORDER BY saga_id", "SELECT * FROM steps ORDER BY ALL"

    whole = open_store(tmp_path / "whole.duckdb")
    ProjectionWriter(whole).apply(batch)
    expected = [whole.execute(q).fetchall() for q in tables]
    whole.close()

    for cut in (3, 9, 15):
        path = tmp_path / f"cut{cut}.duckdb"
        db = open_store(path)
        ProjectionWriter(db).apply(batch[:cut])
        db.close()
        db = open_store(path)
        ProjectionWriter(db).apply(batch)  # the first part again, then the rest
        assert [db.execute(q).fetchall() for q in tables] == expected, cut
        db.close()
