"""`saga status` and `saga history` read the projections while a run writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAGA = [sys.executable, "-m", "actors.app.cli"]

pytestmark = pytest.mark.broker


def saga(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAGA, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_status_and_history_while_a_run_is_writing(tmp_path: Path) -> None:
    log = (tmp_path / "run.log").open("w+")
    run = subprocess.Popen(
        [*SAGA, "run", "--sagas", "12000", "--seed", "9", "--json",
         "--data-dir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        published = None
        while published is None:
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "nothing was published"
            found = list(tmp_path.glob("run*/projections/sagas.parquet"))
            published = found[0].parent.parent if found else None
            time.sleep(0.2)
        # The run's embedded broker, for the consumer lag read from Kafka.
        bootstrap = (tmp_path / "run.log").read_text().split("embedded broker at ")[1]
        kafka = ["--bootstrap-servers", bootstrap.split()[0]]
        # Read while the run holds its DuckDB files open for writing.
        reads_during_run = 0
        seen_groups: set[str] = set()
        while run.poll() is None and reads_during_run < 3:
            status = saga("status", "--json", "--data-dir", str(published), *kafka)
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            assert {"sagas", "throughput_per_s", "saga_latency_ms"} <= set(report)
            seen_groups |= {lag["group"] for lag in report["consumer_lag"]}
            assert "lag_records" in report["projection"]
            # The writer beats from its start: readers know it runs, until the
            # run stops it first of all its parts (the run's process lives on a
            # few seconds more, stopping the rest): then the read is over.
            writer = report["projection"]["freshness"]["writer"]
            if writer == "stopped":
                run.wait(timeout=120)  # its summary is far below a pipe's buffer
                break
            assert writer == "running", writer
            text = saga("status", "--data-dir", str(published))
            assert text.returncode == 0 and "dead letters" in text.stdout
            # Count only reads of a snapshot with sagas in it, taken while the
            # run still went on (the first snapshots are empty tables).
            if report["sagas"] and run.poll() is None:
                reads_during_run += 1
        assert reads_during_run >= 1, "the run ended before a read: make it longer"
        # Lag came from Kafka for the groups that had committed by then.
        known = {"saga-orchestrator", "saga-projection"} | {
            f"{s}-service" for s in ("user", "payment", "account")
        }
        assert seen_groups and seen_groups <= known, seen_groups
        stdout, _ = run.communicate(timeout=600)
        assert run.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
        summary = json.loads(stdout)
        final = json.loads(
            saga("status", "--json", "--data-dir", str(published)).stdout
        )
        counts = {row["status"]: row["count"] for row in final["sagas"]}
        assert final["projection"]["freshness"]["writer"] == "stopped"
        expected = {
            k: summary[k]
            for k in ("completed", "compensated", "rejected", "failed")
            if summary[k]
        }
        assert counts == expected
        first = sorted(published.glob("*.duckdb"))
        assert first, "the DuckDB files stay in the data dir"
        history = saga("history", f"{published.name}-0000000", "--json",
                       "--data-dir", str(published))  # fmt: skip
        assert history.returncode == 0, history.stderr
        events = json.loads(history.stdout)
        assert events[0]["event_type"] == "saga_started"
        assert events[-1]["event_type"].startswith("saga_")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finally:
        run.kill()
        run.wait()
        log.close()
