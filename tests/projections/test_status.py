"""`saga status`, `saga history` and `saga top` over published projections."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from projections.store import open_store
from projections.writer import ProjectionWriter
from tests.projections.test_writer import golden_batch

ROOT = Path(__file__).resolve().parents[2]
SAGA = [sys.executable, "-m", "actors.app.cli"]


def published(tmp_path: Path) -> Path:
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(golden_batch())
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
    assert report["error_rate"] == 0.4 and report["compensation_rate"] == 0.2
    assert report["saga_latency_ms"]["p50"] > 0
    assert report["step_latency_ms"]["p99"] >= report["step_latency_ms"]["p50"]
    assert "consumer_lag" not in report  # no Kafka configured: nothing to ask
    text = saga("status", "--data-dir", str(data)).stdout
    assert "deposit      completed" in text and "dead letters 1" in text


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


def test_top_refreshes_until_interrupted(tmp_path: Path) -> None:
    data = published(tmp_path)
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
    assert out.count("saga top (Ctrl-C quits)") >= 2
    assert "\x1b[2J" in out
