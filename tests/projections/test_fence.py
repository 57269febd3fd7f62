"""The projection reads ``saga.events`` through the fence: a partition handed
over under a saga, its old owner appending on, shows the new owner's history
alone, and the epoch in force survives a restart of the writer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from actors.core import Claim, LogCodec, LogRecord
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.partitions import home_partition
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from projections.owners import BatchFence
from projections.reader import open_projections
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Handover, at
from tests.conftest import append_to_log, private_kafka

PARTITIONS = 2
CODEC = LogCodec()


def project(kafka: KafkaSettings, path: Path, group: str) -> None:
    """One lifetime of the writer, wired as the ProjectionActor wires it: the
    file opened, the group joined (a partition it never committed on starts
    at the file's position), ``saga.events`` read to its end, the tables
    published, the file closed."""
    db = open_store(path)
    writer = ProjectionWriter(db)

    def handle(deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        writer.apply(
            [Consumed(d.topic, d.partition, d.offset, d.value) for d in deliveries]
        )
        return deliveries

    def positions(tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: writer.next_offset(*tp) for tp in tps}

    with PartitionReader(kafka) as reader:
        ends = reader.ends([TP(SAGA_EVENTS, p) for p in range(PARTITIONS)])
    try:
        with KafkaEventListener(
            kafka,
            [SAGA_EVENTS],
            handle,
            group_id=group,
            decode=False,
            start_at=positions,
        ) as listener:
            deadline = time.monotonic() + 60
            while any(writer.next_offset(*tp) < end for tp, end in ends.items()):
                assert time.monotonic() < deadline, "the writer did not catch up"
                listener.poll_once(timeout_ms=200)
        writer.publish(path.parent / "projections")
    finally:
        db.close()


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(path), read_only=True) as db:
        return {
            "events": db.execute(
                "SELECT seq, event_type FROM saga_events ORDER BY seq"
            ).fetchall(),
            "steps": db.execute(
                "SELECT step, attempt, outcome FROM steps ORDER BY commanded_at"
            ).fetchall(),
            "sagas": db.execute("SELECT saga_id, status FROM sagas").fetchall(),
            "owners": db.execute(
                'SELECT "partition", epoch, owner, engine, claim_offset, '
                "fenced_records FROM partition_owners"
            ).fetchall(),
            "dead_letters": db.execute("SELECT * FROM dead_letters").fetchall(),
        }


def rows_of(*records: LogRecord) -> list[tuple[int, str]]:
    """The ``saga_events`` rows of ``records`` (seq, event type)."""
    with duckdb.connect(":memory:") as db:
        writer = ProjectionWriter(db)
        writer.apply(
            [
                Consumed(SAGA_EVENTS, 0, i, CODEC.encode(r))
                for i, r in enumerate(records)
            ]
        )
        return db.execute(
            "SELECT seq, event_type FROM saga_events ORDER BY seq"
        ).fetchall()


@pytest.mark.broker
def test_a_replaced_owners_records_make_no_rows_before_or_after_a_restart(
    tmp_path: Path,
) -> None:
    partition = home_partition("s-1", PARTITIONS)
    handover = Handover(partition)
    path = tmp_path / "projections.duckdb"
    group = f"projection-{uuid.uuid4().hex[:8]}"
    owners = [at(r, 0) for r in handover.owner.records()]  # as rows, epochs aside
    with private_kafka(PARTITIONS) as kafka:
        append_to_log(kafka, partition, handover.entries)
        project(kafka, path, group)
        seen = tables(path)
        # The owner's two records, not the zombie's success of the verification
        # (and no phantom process_payment step it commanded).
        assert seen["events"] == rows_of(*owners)
        assert seen["steps"] == [("verify_user", 1, "timed_out")]
        assert seen["sagas"] == [("s-1", "running")]
        assert seen["owners"] == [(partition, 2, "host-b", "engine-1", 2, 1)]
        assert seen["dead_letters"] == []  # a claim is no dead letter
        published = open_projections(tmp_path / "projections")
        assert published.sql("SELECT owner FROM partition_owners").fetchall() == [
            ("host-b",)
        ]

        # A restart: the writer must go on at epoch 2, which only its file
        # knows; the zombie appends on either side of the owner's record.
        payment, deposit = handover.zombie_goes_on()
        rejected = handover.owner_rejects()
        append_to_log(kafka, partition, [payment, rejected, deposit])
        project(kafka, path, group)
        seen = tables(path)
        assert seen["events"] == rows_of(*owners, at(rejected, 0))
        assert seen["steps"] == [("verify_user", 1, "timed_out")]
        assert seen["sagas"] == [("s-1", "rejected")]
        assert seen["owners"] == [(partition, 2, "host-b", "engine-1", 2, 3)]


def consumed(entries: Sequence[LogRecord | Claim], first: int = 0) -> list[Consumed]:
    return [
        Consumed(SAGA_EVENTS, 0, first + i, CODEC.encode(e))
        for i, e in enumerate(entries)
    ]


def test_one_entry_per_batch_the_fence_carries_and_claims_are_no_records(
    tmp_path: Path,
) -> None:
    handover = Handover()
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    reports = [writer.apply([c]) for c in consumed(handover.entries)]
    assert [(r.events, r.unreadable, r.fenced) for r in reports] == [
        (0, 0, 0), (2, 0, 0), (0, 0, 0), (0, 0, 1), (1, 0, 0),
    ]  # fmt: skip
    assert [r.owners for r in reports] == [1, 0, 1, 1, 0]
    assert db.execute(
        "SELECT epoch, owner, claimed_at, claim_offset, fenced_records "
        "FROM partition_owners"
    ).fetchall() == [(2, "host-b", None, 2, 1)]  # the claims gave no time
    db.close()


def test_a_batch_that_fails_to_commit_leaves_the_epochs_as_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch comes back: it must meet the epochs it met the first time, or
    its claim would be void against itself and its owner never recorded."""
    handover = Handover()
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    batch = consumed(handover.entries)
    write = BatchFence.write

    def full_disk(self: BatchFence, db: duckdb.DuckDBPyConnection) -> None:
        monkeypatch.setattr(BatchFence, "write", write)
        raise duckdb.IOException("no space left on device")

    monkeypatch.setattr(BatchFence, "write", full_disk)
    with pytest.raises(duckdb.IOException):
        writer.apply(batch)
    report = writer.apply(batch)
    assert (report.events, report.fenced) == (3, 1)
    assert db.execute(
        "SELECT epoch, owner, claim_offset, fenced_records FROM partition_owners"
    ).fetchall() == [(2, "host-b", 2, 1)]
    db.close()


def test_a_writer_joining_the_log_part_way_takes_the_epoch_it_meets(
    tmp_path: Path,
) -> None:
    """A new file under a group that committed (the log read part-way): the
    epoch there is unknown, so the first record's is taken, and kept."""
    handover = Handover()
    path = tmp_path / "projections.duckdb"
    *_, zombies, owners = consumed(handover.entries)
    db = open_store(path)
    assert ProjectionWriter(db).apply([owners]).events == 1
    db.close()
    # Restarted, it knows epoch 2 from its file: the zombie's record is fenced.
    db = open_store(path)
    report = ProjectionWriter(db).apply([zombies._replace(offset=5)])
    assert (report.events, report.fenced) == (0, 1)
    assert db.execute(
        "SELECT epoch, owner, fenced_records FROM partition_owners"
    ).fetchall() == [(2, None, 1)]
    db.close()


def test_a_file_from_before_claims_named_their_node_opens_and_keeps_it(
    tmp_path: Path,
) -> None:
    """The writer before claims named their node made ``partition_owners``
    without ``node``: its file opens, its rows stay, the next claim's node is
    kept, and the table publishes as a new file's does."""
    path = tmp_path / "projections.duckdb"
    db = open_store(path)
    db.execute(
        """
        CREATE TABLE partition_owners (
            "partition" INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, owner VARCHAR,
            engine VARCHAR, claimed_at TIMESTAMPTZ, claim_offset BIGINT,
            fenced_records BIGINT NOT NULL);
        INSERT INTO partition_owners VALUES (1, 1, 'host-a', 'engine-1', NULL, 0, 0);
        """
    )
    db.close()
    claim = Claim(partition=0, epoch=1, owner="host-b", engine="engine-1", node="n-b")
    for _ in range(2):  # the column added once, then found
        db = open_store(path)
        writer = ProjectionWriter(db)
        writer.apply(consumed([claim]))
        writer.publish(tmp_path / "projections")
        db.close()
    published = open_projections(tmp_path / "projections")
    assert published.sql(
        'SELECT "partition", epoch, owner, node FROM partition_owners'
    ).fetchall() == [(0, 1, "host-b", "n-b"), (1, 1, "host-a", None)]
    with duckdb.connect() as fresh:
        ProjectionWriter(fresh)
        new = fresh.sql("DESCRIBE partition_owners").fetchall()
    old = published.sql("DESCRIBE partition_owners").fetchall()
    assert [c[:2] for c in old] == [c[:2] for c in new]  # names and types
    assert old[-1][:2] == ("node", "VARCHAR")
