"""`saga list` over published projections (real DuckDB and Parquet files), and
`saga show`, `saga history` and `saga dlq` taking what it lists."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from events.wire.dead_letters import LetterAction, LetterActionCodec, LetterState
from projections.archive import saga_log
from projections.listing import FilterError, Filters, list_sagas, parse_moment
from projections.reader import open_projections
from projections.schema import migrate
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.projections.test_status import published, saga
from tests.projections.test_writer import golden_batch

#: The golden sagas' ids, newest first: they start at one time, so the id
#: orders them (descending).
ALL = [
    "g-retried_then_failed",
    "g-rejected",
    "g-in_doubt",
    "g-completed",
    "g-compensated",
]


def listed(data: Path, *args: str) -> dict[str, object]:
    result = saga("list", "--json", "--data-dir", str(data), *args)
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_filters_narrow_and_counts_cover_every_match(tmp_path: Path) -> None:
    data = published(tmp_path)
    everything = listed(data)
    assert [s["saga_id"] for s in everything["sagas"]] == ALL  # type: ignore[index]
    assert everything["total"] == 5
    assert everything["counts"] == {
        "status": {"completed": 2, "compensated": 1, "failed": 1, "rejected": 1},
        "step": {"process_payment": 2, "deposit": 2, "verify_user": 1},
    }
    one = listed(data, "--status", "compensated")
    [row] = one["sagas"]  # type: ignore[misc]
    assert row["saga_id"] == "g-compensated" and row["reason"] == "refused"
    assert row["current_step"] == "process_payment" and row["duration_ms"] == 170
    # Repeated and comma-separated statuses are one set.
    both = listed(data, "--status", "rejected,failed", "--status", "compensated")
    assert both["total"] == 3
    assert listed(data, "--step", "deposit")["total"] == 2
    assert listed(data, "--type", "deposit")["total"] == 5
    assert listed(data, "--type", "withdrawal")["total"] == 0
    # The error text: the outcome's reason or the last step error, any case.
    timed_out = listed(data, "--error", "TIMED OUT")
    assert [s["saga_id"] for s in timed_out["sagas"]] == ["g-in_doubt"]  # type: ignore[index]
    where = listed(data, "--where", "retries > 0 AND status <> 'failed'")
    assert [s["saga_id"] for s in where["sagas"]] == ["g-in_doubt"]  # type: ignore[index]
    # Time: the golden sagas started in 2023.
    assert listed(data, "--since", "1d")["total"] == 0
    assert listed(data, "--until", "2023-11-15T00:00:00+00:00")["total"] == 5
    assert listed(data, "--since", "2023-11-15T00:00:00+00:00")["total"] == 0


def test_pages_follow_the_cursor_and_say_how_to_get_the_next(tmp_path: Path) -> None:
    data = published(tmp_path)
    seen: list[str] = []
    after: list[str] = []
    while True:
        page = listed(data, "--limit", "2", *after)
        assert page["total"] == 5  # the whole set, whichever the page
        seen += [s["saga_id"] for s in page["sagas"]]  # type: ignore[attr-defined]
        if page["next_after"] is None:
            break
        after = ["--after", str(page["next_after"])]
    assert seen == ALL
    assert listed(data, "--limit", "2", "--page", "3")["sagas"][0]["saga_id"] == (  # type: ignore[index]
        "g-compensated"
    )
    # The text ends with the command for the next page, which runs as printed.
    text = saga("list", "--limit", "2", "--status", "completed,failed,rejected",
                "--data-dir", str(data)).stdout  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "4 sagas: 2 completed, 1 failed, 1 rejected"
    assert lines[1].startswith("by step: ")
    assert "sagas 1-2 of 4, newest first; next page: saga list " in lines[-1]
    command = shlex.split(lines[-1].split("next page: ")[1])
    following = saga(*command[1:])
    assert following.returncode == 0, following.stderr
    assert "g-in_doubt" in following.stdout and "g-completed" in following.stdout
    assert "g-rejected" not in following.stdout
    assert "the last page (4 in all)" in following.stdout


def test_bad_filters_are_named_with_what_would_do(tmp_path: Path) -> None:
    data = published(tmp_path)
    wrong = saga("list", "--data-dir", str(data), "--where", "retriez > 0")
    assert wrong.returncode == 2
    assert "--where 'retriez > 0'" in wrong.stderr
    assert (
        "retries (INTEGER)" in wrong.stderr and "last_error (VARCHAR)" in wrong.stderr
    )
    status = saga("list", "--data-dir", str(data), "--status", "done")
    assert status.returncode == 2
    assert "unknown status done; a saga is one of: running" in status.stderr
    since = saga("list", "--data-dir", str(data), "--since", "yesterday")
    assert since.returncode == 2 and "'yesterday' is not a time" in since.stderr
    cursor = saga("list", "--data-dir", str(data), "--after", "nope")
    assert cursor.returncode == 2 and "is not a cursor" in cursor.stderr


def test_every_listed_id_is_taken_by_show_and_history(tmp_path: Path) -> None:
    """With no Kafka configured, `saga show` reads the projections, and its
    state is the fold of the events they keep."""
    data = published(tmp_path)
    for row in listed(data)["sagas"]:  # type: ignore[attr-defined]
        shown = saga("show", row["saga_id"], "--data-dir", str(data))
        assert shown.returncode == 0, shown.stderr
        head = shown.stdout.splitlines()[0]
        assert head == f"saga {row['saga_id']} (deposit): {row['status']}"
        assert "read from the projections in" in shown.stderr
        history = saga("history", row["saga_id"], "--data-dir", str(data))
        assert history.returncode == 0, history.stderr
    state = json.loads(
        saga("show", "g-compensated", "--json", "--data-dir", str(data)).stdout
    )["state"]
    assert state["status"] == "compensated" and state["reason"] == "refused"
    missing = saga("show", "nope", "--data-dir", str(data))
    assert (
        missing.returncode == 1 and "no saga nope in the projections" in missing.stderr
    )


def test_dead_letters_are_listed_and_shown_from_the_projections(tmp_path: Path) -> None:
    data = published(tmp_path)
    listing = saga("dlq", "list", "--data-dir", str(data))
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[1].split()[:2] == ["2:0", "2026-11-25"]
    assert "1 open dead letter(s)" in listing.stderr
    shown = saga("dlq", "show", "2:0", "--json", "--data-dir", str(data))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "id": "2:0",
        "topic": "user.events.verify",
        "partition": 2,
        "offset": 9,
        "error": "not JSON",
        "deadAt": "2026-11-25T00:00:00Z",
        "source": "saga-host",
        "payload": "{oops",
        "key": None,
        "messageId": None,
        "sagaId": None,
        "attempts": 1,
        "payloadSize": 5,
        "sagaType": "",
        "step": "",
        "sagaStatus": "",
        "state": "open",
        "previous": None,
        "action": None,
        "payloadEncoding": "utf-8",
    }
    missing = saga("dlq", "show", "9:9", "--data-dir", str(data))
    assert missing.returncode == 1
    assert "no dead letter 9:9 in the projections (1 letter there" in missing.stderr


def test_a_letters_state_is_its_newest_action_in_the_projections(
    tmp_path: Path,
) -> None:
    """What was done with a letter (saga.dlq.actions) is projected too: a
    finished run's letters list with the state they ended in."""
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    codec = LetterActionCodec()
    replayed = LetterAction(
        letter="2:0",
        state=LetterState.REPLAYED,
        at=datetime(2026, 11, 25, 1, tzinfo=UTC),
        operator="ops@desk",
        sent="user.events.verify/2/10",
    )
    writer.apply(
        [*golden_batch(), Consumed("saga.dlq.actions", 2, 0, codec.encode(replayed))]
    )
    writer.publish(tmp_path / "projections")
    db.close()
    still_open = saga("dlq", "list", "--json", "--data-dir", str(tmp_path))
    assert json.loads(still_open.stdout) == []
    every = saga("dlq", "list", "--state", "all", "--json", "--data-dir", str(tmp_path))
    [row] = json.loads(every.stdout)
    assert row["state"] == "replayed"
    assert row["action"]["sent"] == "user.events.verify/2/10"
    assert row["action"]["operator"] == "ops@desk"


def test_an_older_writers_file_gains_the_new_columns_filled_in(tmp_path: Path) -> None:
    """A file made before ``updated_at``, ``reason``, ``last_error`` (sagas)
    and ``key``, ``payload_size`` (dead letters): opened by today's writer,
    its rows read as if today's writer had written them."""
    new = open_store(tmp_path / "new.duckdb")
    ProjectionWriter(new).apply(golden_batch())
    new.close()
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute(f"ATTACH '{tmp_path / 'new.duckdb'}' AS new (READ_ONLY)")
        migrate(old)  # today's tables, then the new columns taken away
        old.execute("DROP TABLE sagas")
        old.execute(
            "CREATE TABLE sagas (saga_id VARCHAR PRIMARY KEY, saga_type VARCHAR, "
            "status VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, "
            "duration_ms BIGINT, current_step VARCHAR, retries INTEGER, "
            "compensations INTEGER)"
        )
        old.execute(
            "INSERT INTO sagas SELECT * EXCLUDE (updated_at, reason, last_error) "
            "FROM new.sagas"
        )
        old.execute('ALTER TABLE saga_events DROP COLUMN "partition"')
        old.execute('ALTER TABLE saga_events DROP COLUMN "offset"')
        old.execute(
            'INSERT INTO saga_events SELECT * EXCLUDE ("partition", "offset") '
            "FROM new.saga_events"
        )
        old.execute('ALTER TABLE dead_letters DROP COLUMN "key"')
        old.execute("ALTER TABLE dead_letters DROP COLUMN payload_size")
        expected = old.execute("SELECT * FROM new.sagas ORDER BY saga_id").fetchall()
    db = open_store(path)
    ProjectionWriter(db)
    assert db.execute("SELECT * FROM sagas ORDER BY saga_id").fetchall() == expected
    letters = db.execute("DESCRIBE dead_letters").fetchall()
    assert [c[0] for c in letters][-2:] == ["key", "payload_size"]
    # Where each event sat on the log, an older writer never knew: its
    # records read back by decision time, as they were written.
    events = db.execute("DESCRIBE saga_events").fetchall()
    assert [c[0] for c in events][-2:] == ["partition", "offset"]
    with duckdb.connect(str(tmp_path / "new.duckdb"), read_only=True) as today:
        for saga_id in ("g-completed", "g-in_doubt", "g-retried_then_failed"):
            assert saga_log(db, saga_id) == saga_log(today, saga_id)
    assert db.execute("SELECT count(*) FROM saga_state_at(now())").fetchone() == (5,)
    db.close()


def test_listing_reads_what_an_older_writer_published(tmp_path: Path) -> None:
    """Published ``sagas`` without the new columns: listed, unfiltered by them."""
    data = published(tmp_path)
    sagas = data / "projections" / "sagas.parquet"
    old = sagas.with_name("old.parquet")
    with duckdb.connect() as db:
        db.execute(
            f"COPY (SELECT * EXCLUDE (updated_at, reason, last_error) FROM '{sagas}') "
            f"TO '{old}' (FORMAT parquet)"
        )
    old.replace(sagas)
    found = list_sagas(open_projections(data / "projections"), Filters(error="x"))
    assert found.total == 0
    assert list_sagas(open_projections(data / "projections"), Filters()).total == 5


def test_moments_are_ages_or_iso_times() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_moment("10m", now) == now - timedelta(minutes=10)
    assert parse_moment("1.5h", now) == now - timedelta(minutes=90)
    assert parse_moment("2026-11-26T10:00:00+00:00", now) == now - timedelta(hours=2)
    assert parse_moment("2026-11-26 10:00", now).tzinfo is not None  # local
    with pytest.raises(FilterError, match="is not a time"):
        parse_moment("10 minutes", now)
