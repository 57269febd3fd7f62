"""`saga status`, `saga history` and `saga top` over published projections."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console

from actors.app.cli.status import status_text
from actors.app.cli.top import snapshot, view
from actors.app.config import SagaConfig
from actors.core import Claim, LogCodec, LogRecord
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run, at
from tests.projections.test_writer import golden_batch

ROOT = Path(__file__).resolve().parents[2]
SAGA = [sys.executable, "-m", "actors.app.cli"]
#: Ray node ids, as long as real ones.
NODE_A, NODE_B = "4f3a" * 14, "9c0d" * 14


def claims() -> list[Consumed]:
    """Partitions 1 to 4 of ``saga.events`` claimed by two hosts: host 0 on
    node A at epochs 1 to 3 (only the claim of partition 4 gave its time);
    host 1 on node B, whose partition its replaced owner appended to after the
    claim (a record of epoch 1 after the claim of epoch 2)."""
    zombie = Run("zombie")
    zombie.start(now=1_000)
    [started] = zombie.records()

    def claim(partition: int, epoch: int, host: int, node: str) -> Claim:
        time = 1_764_072_000_000 if partition == 4 else 0  # 2025-11-25 12:00 UTC
        owner = f"saga-host-ab12-{host}"
        return Claim(
            partition=partition, epoch=epoch, owner=owner, engine="ab12", at=time,
            node=node,
        )  # fmt: skip

    entries: dict[int, list[Claim | LogRecord]] = {
        1: [claim(1, 1, 0, NODE_A)],
        2: [claim(2, 2, 1, NODE_B), at(started, 1)],
        3: [claim(3, 3, 0, NODE_A)],
        4: [claim(4, 2, 0, NODE_A)],
    }
    codec = LogCodec()
    return [
        Consumed("saga.events", partition, offset, codec.encode(entry))
        for partition, log in entries.items()
        for offset, entry in enumerate(log)
    ]


def published(tmp_path: Path, *, claimed: bool = False) -> Path:
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(golden_batch() + (claims() if claimed else []))
    writer.publish(tmp_path / "projections")
    db.close()
    return tmp_path


def saga(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAGA, *args], capture_output=True, text=True, cwd=ROOT)


def test_status_reports_counts_latencies_rates_and_dead_letters(tmp_path: Path) -> None:
    data = published(tmp_path)
    result = saga("status", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    counts = {row["status"]: row["count"] for row in report["sagas"]}
    assert counts == {"completed": 2, "compensated": 1, "rejected": 1, "failed": 1}
    assert report["dead_letters"] == 1
    assert report["error_rate"] == 0.2 and report["compensation_rate"] == 0.2
    assert report["rejection_rate"] == 0.2  # an outcome, not an error
    assert report["saga_latency_ms"]["p50"] > 0
    assert report["step_latency_ms"]["p99"] >= report["step_latency_ms"]["p50"]
    assert "consumer_lag" not in report  # no Kafka configured: nothing to ask
    # A log from before claims: nobody owns anything, and nothing says so.
    assert report["owners"] == {"hosts": [], "fenced_records": 0}
    text = saga("status", "--data-dir", str(data)).stdout
    assert "deposit      completed" in text and "dead letters 1" in text
    assert "owners" not in text and "fenced" not in text


def test_status_shows_each_hosts_partitions_node_and_epochs(tmp_path: Path) -> None:
    data = published(tmp_path, claimed=True)
    result = saga("status", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # The replaced owner's record made no saga.
    assert sum(row["count"] for row in report["sagas"]) == 5
    owners = report["owners"]
    assert owners["fenced_records"] == 1
    first, second = owners["hosts"]
    claimed_at = first.pop("claimed_at")
    assert datetime.fromisoformat(claimed_at) == datetime(2025, 11, 25, 12, tzinfo=UTC)
    assert first == {
        "owner": "saga-host-ab12-0",
        "node": NODE_A,
        "partitions": [1, 3, 4],
        "min_epoch": 1,
        "max_epoch": 3,
    }
    assert second == {
        "owner": "saga-host-ab12-1",
        "node": NODE_B,
        "partitions": [2],
        "min_epoch": 2,
        "max_epoch": 2,
        "claimed_at": None,  # its claim gave no time
    }
    text = saga("status", "--data-dir", str(data)).stdout.splitlines()
    after = text.index("dead letters 1, 1 open") + 1
    assert text[after] == "                  1  not JSON"  # open letters by error
    assert text[after + 1 : after + 4] == [
        "owners       saga-host-ab12-0 on node 4f3a4f3a...: partitions 1,3,4 "
        "(epochs 1-3)",
        "owners       saga-host-ab12-1 on node 9c0d9c0d...: partitions 2 (epoch 2)",
        "fenced       1 record of replaced owners skipped",
    ]
    # saga top's view on a terminal shows them too.
    console = Console(record=True, width=120, color_system=None)
    console.print(view(snapshot(SagaConfig(data_dir=str(data)))))
    drawn = console.export_text()
    assert "owners       saga-host-ab12-0 on node 4f3a4f3a...: partitions" in drawn
    assert "fenced       1 record of replaced owners skipped" in drawn


def test_status_reads_what_an_older_writer_published(tmp_path: Path) -> None:
    """A directory published before claims named their node (no ``node``
    column), or before ``partition_owners`` (no file): status says what it
    can, and what is missing."""
    data = published(tmp_path, claimed=True)
    owners = data / "projections" / "partition_owners.parquet"
    old = owners.with_name("old.parquet")
    with duckdb.connect() as db:
        db.execute(
            f"COPY (SELECT * EXCLUDE (node) FROM '{owners}') TO '{old}' "
            "(FORMAT parquet)"
        )
    old.replace(owners)
    result = saga("status", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert (
        "owners       saga-host-ab12-1: partitions 2 (epoch 2)"
        in result.stdout.splitlines()
    )

    owners.unlink()
    result = saga("status", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert (
        "owners       not published (a projection writer from before ownership "
        "claims)" in result.stdout.splitlines()
    )
    assert "dead letters 1" in result.stdout
    report = json.loads(saga("status", "--json", "--data-dir", str(data)).stdout)
    assert report["owners"]["hosts"] == [] and "note" in report["owners"]
    history = saga("history", "g-compensated", "--data-dir", str(data))
    assert history.returncode == 0, history.stderr


def test_owner_lines_shorten_runs_and_name_what_is_unknown() -> None:
    """Partitions in runs, an owner whose claim the projection never read (it
    joined the log after it), a claim that named no node."""
    hosts = [
        {"owner": "saga-host-ab12-0", "node": None, "partitions": [*range(4), 5, 7, 8]},
        {"owner": None, "node": "", "partitions": [9]},
    ]
    report: dict[str, Any] = {
        "sagas": [],
        "throughput_per_s": {"1m": None, "5m": None},
        "saga_latency_ms": {"p50": None},
        "step_latency_ms": {"p50": None},
        "error_rate": None,
        "compensation_rate": None,
        "dead_letters": 0,
        "owners": {
            "hosts": [h | {"min_epoch": 4, "max_epoch": 4} for h in hosts],
            "fenced_records": 1_200,
        },
        "projection": {"published_age_s": 0.5},
    }
    lines = status_text(report).splitlines()
    assert lines[-4:-1] == [
        "owners       saga-host-ab12-0: partitions 0-3,5,7,8 (epoch 4)",
        "owners       (claim not read): partitions 9 (epoch 4)",
        "fenced       1,200 records of replaced owners skipped",
    ]


def test_history_lists_events_with_timings(tmp_path: Path) -> None:
    data = published(tmp_path)
    result = saga("history", "g-compensated", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "saga_started" in lines[0] and "+      0 ms" in lines[0]
    assert "saga_compensated" in lines[-1] and "+    170 ms" in lines[-1]
    missing = saga("history", "nope", "--data-dir", str(data))
    assert missing.returncode == 1 and "no saga nope" in missing.stderr
    nothing = saga("status", "--data-dir", str(tmp_path / "elsewhere"))
    assert (
        nothing.returncode == 1 and "holds no published projections" in nothing.stderr
    )


def test_top_prints_plain_snapshots_off_a_terminal(tmp_path: Path) -> None:
    """To a file: a snapshot per interval, no escape codes, Ctrl-C exits 0."""
    data = published(tmp_path, claimed=True)
    screen = tmp_path / "screen.txt"
    with screen.open("w") as sink:
        top = subprocess.Popen(
            [*SAGA, "top", "--every", "0.2", "--data-dir", str(data)],
            cwd=ROOT, stdout=sink, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while screen.read_text().count("saga top") < 2:
            assert top.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        top.send_signal(signal.SIGINT)
        top.wait(timeout=10)
    out = screen.read_text()
    assert top.returncode == 0
    assert out.count("(Ctrl-C quits)") >= 2
    assert "\x1b" not in out and "\r" not in out
    assert out.count("owners       saga-host-ab12-1 on node 9c0d9c0d...") >= 2
    assert out.count("errors       failed 20.0% of 5 ended") >= 2


def test_top_waits_for_projections_then_shows_them(tmp_path: Path) -> None:
    """Started before anything is published, it says what it waits for and
    goes on; once published, the next snapshot shows the sagas."""
    screen = tmp_path / "screen.txt"
    with screen.open("w") as sink:
        top = subprocess.Popen(
            [*SAGA, "top", "--every", "0.2", "--data-dir", str(tmp_path)],
            cwd=ROOT, stdout=sink, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        waiting = f"waiting for projections in {tmp_path / 'projections'}..."
        while waiting not in screen.read_text():
            assert top.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        published(tmp_path)
        while "deposit      completed" not in screen.read_text():
            assert top.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        top.send_signal(signal.SIGINT)
        top.wait(timeout=10)
    assert top.returncode == 0, top.stderr and top.stderr.read()


def test_top_redraws_in_place_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (a pty): rich's live view, redrawn by moving the cursor
    up over the last frame, not by clearing the screen; Ctrl-C exits 0."""
    data = published(tmp_path)
    controller, terminal = pty.openpty()
    top = subprocess.Popen(
        [*SAGA, "top", "--every", "0.2", "--data-dir", str(data)],
        cwd=ROOT, stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
    )  # fmt: skip
    os.close(terminal)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while out.count(b"saga top") < 3:
            assert top.poll() is None and time.monotonic() < deadline, out
            if select.select([controller], [], [], 0.1)[0]:
                out += os.read(controller, 65536)
        top.send_signal(signal.SIGINT)
        assert top.wait(timeout=10) == 0
    finally:
        top.kill()
        os.close(controller)
    assert b"\x1b[1A" in out  # the cursor moved up to redraw
    assert b"\x1b[2J" not in out  # no clearing of the screen (no flicker)
    assert b"nothing in flight" in out  # the golden sagas all ended
    assert b"dead letters \x1b[1;31m1" in out  # errors in red
    assert b"saga latency p50 170" in out


def test_status_counts_open_letters_by_error_and_the_held_sagas(
    tmp_path: Path,
) -> None:
    """Letters by error with their sagaIds masked, the replayed one not open;
    a saga held behind a letter, with the reply it holds; a released one not."""
    from events.wire.dead_letters import (
        DeadLetter,
        DeadLetterCodec,
        LetterAction,
        LetterActionCodec,
        LetterState,
    )
    from tests.actors.core.sagas import reply_to

    held = Run("s-held")
    held.start(now=1_000)
    held.hold(1_010)
    held.feed(reply_to(held.sent[-1], 1_040))
    released = Run("s-released")
    released.start(now=1_000)
    released.hold(1_010)
    released.release(1_050)
    batch = [
        Consumed("saga.events", 0, n, raw)
        for n, raw in enumerate([*held.log, *released.log])
    ]
    codec = DeadLetterCodec()
    for n, saga_id in enumerate(["s-held", "s-released", "s-other"]):
        letter = DeadLetter(
            topic="user.events.verify",
            partition=0,
            offset=n,
            error=f"saga {saga_id} is waiting on step 'a', not 'b' (offset {n})",
            dead_at=datetime(2026, 11, 25, tzinfo=UTC),
            source="saga-host",
            payload=b"{}",
            saga_id=saga_id,
        )
        batch.append(Consumed("saga.dlq", 0, n, codec.encode(letter)))
    action = LetterAction(
        letter="0:1", state=LetterState.RESOLVED, at=datetime(2026, 11, 25, tzinfo=UTC)
    )
    batch.append(Consumed("saga.dlq.actions", 0, 0, LetterActionCodec().encode(action)))
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(batch)
    writer.publish(tmp_path / "projections")
    db.close()
    result = saga("status", "--json", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dead_letters"] == 3
    assert report["letters"] == {
        "open": 2,
        "by_error": [
            {"error": "saga <saga> is waiting on step 'a', not 'b' (offset N)",
             "letters": 2},
        ],
    }  # fmt: skip
    assert report["held"] == {"sagas": 1, "replies": 1}
    text = status_text(report)
    assert "dead letters 3, 2 open" in text
    assert "held         1 saga(s) behind a dead letter, 1 repl(ies) held" in text
