"""A finished `saga run` is found and read without its run id or its broker:
the must-hold of issue 14 (`saga run --data-dir D`, then `saga status`,
`saga list`, `saga show`, `saga history` and `saga dlq` on D alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]

pytestmark = pytest.mark.broker


def saga(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAGA, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_a_finished_run_is_read_from_its_data_dir_alone(tmp_path: Path) -> None:
    data = str(tmp_path)
    # Seed 6 sends 20 of its 300 deposits to closed accounts: compensated.
    run = saga("run", "--sagas", "300", "--seed", "6", "--json", "--data-dir", data)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    [run_dir] = [p for p in tmp_path.iterdir() if p.name.startswith("run")]
    assert summary["data_dir"] == str(run_dir)  # kept, and said where
    assert f"data in {run_dir} (kept after the run)" in run.stderr

    status = saga("status", "--json", "--data-dir", data)
    assert status.returncode == 0, status.stderr
    assert f"reading run {run_dir.name}" in status.stderr
    counts = {row["status"]: row["count"] for row in json.loads(status.stdout)["sagas"]}
    outcomes = ("completed", "compensated", "rejected", "failed")
    assert counts == {k: summary[k] for k in outcomes if summary[k]}
    # The writer stopped with the run: the data is final, and says so.
    fresh = json.loads(status.stdout)["projection"]["freshness"]
    assert fresh["writer"] == "stopped" and fresh["final"] and not fresh["stale"]

    listed = saga("list", "--data-dir", data, "--status", "compensated", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert found["total"] == summary["compensated"] > 0
    assert found["counts"]["status"] == {"compensated": summary["compensated"]}
    assert "no writer running since" in listed.stderr
    some = found["sagas"][0]
    assert some["status"] == "compensated" and some["reason"]

    # No broker: the run's was in memory and is gone. The projections answer.
    shown = saga("show", some["saga_id"], "--data-dir", data)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"saga {some['saga_id']} (deposit): compensated"
    assert lines[1] == f"reason: {some['reason']}"
    assert "saga_compensated" in lines[-1]
    assert f"read from the projections in {run_dir}" in shown.stderr
    history = saga("history", some["saga_id"], "--data-dir", data)
    assert history.returncode == 0, history.stderr
    assert len(history.stdout.splitlines()) == len(lines) - 2

    letters = saga("dlq", "list", "--data-dir", data, "--json")
    assert letters.returncode == 0, letters.stderr
    assert len(json.loads(letters.stdout)) == summary["dlq"]
