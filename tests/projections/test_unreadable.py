"""Records the projection cannot read are passed over and counted, never retried:
a batch that failed on one would come back, and fail on it, forever."""

from __future__ import annotations

from pathlib import Path

from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.projections.test_writer import golden_batch

DEEP = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"


def test_unreadable_records_are_counted_and_their_positions_passed(
    tmp_path: Path,
) -> None:
    batch = golden_batch()
    events = [c for c in batch if c.topic == "saga.events"]
    letter = next(c for c in batch if c.topic == "saga.dlq")
    end = events[-1].offset + 1
    poisoned = [
        *events,
        Consumed("saga.events", 0, end, DEEP),
        Consumed("saga.events", 0, end + 1, b"\xff not a record"),
        Consumed("saga.events", 0, end + 2, b'{"sagaId": "s", "seq": 1e999}'),
        Consumed("saga.dlq", 2, letter.offset, DEEP),
        Consumed("saga.dlq", 2, letter.offset + 1, letter.value),
    ]
    clean = ProjectionWriter(open_store(tmp_path / "clean.duckdb")).apply(batch)
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    report = writer.apply(poisoned)
    assert report.unreadable == 4
    assert (report.events, report.dead_letters) == (clean.events, 1)
    assert writer.next_offset("saga.events", 0) == end + 3
    assert writer.next_offset("saga.dlq", 2) == letter.offset + 2
    # The positions are durable with the batch: a redelivery is all skipped.
    db.close()
    again = ProjectionWriter(open_store(tmp_path / "projections.duckdb"))
    assert again.apply(poisoned).skipped == len(poisoned)
