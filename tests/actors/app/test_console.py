"""``saga run``'s console, as a log sees it: stdout holds the summary and
nothing of Ray's (its notices of the processes chaos kills, its token warning,
the actors' logs), and stderr, not being a terminal, has no ``\\r`` frames and
no escape codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]

pytestmark = pytest.mark.broker


def test_a_chaos_run_into_a_file_leaves_no_ray_notice_and_no_escape_code(
    tmp_path: Path,
) -> None:
    """`saga run --sagas 2000 --chaos > out.txt`: the faults kill a host, a
    router, a service and the projection, which Ray reports (raylet, actors);
    none of it reaches the file."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    data = tmp_path / "data"
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.run(
            [*SAGA, "run", "--sagas", "2000", "--chaos", "--seed", "20261126",
             "--data-dir", str(data)],
            stdout=stdout, stderr=stderr, cwd=ROOT, timeout=600,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ).returncode  # fmt: skip
    text, log = out.read_text(), err.read_text()
    assert code == 0, log[-3000:]
    assert text.startswith("sagas        2,000: ")
    assert "audit        clean" in text
    for noise in ("(raylet)", "(RouterActor", "(RouterOnRay", "pid=", "WARNING"):
        assert noise not in text, noise
    assert "\x1b" not in text
    # stderr is a file too: plain lines, one per status, none blank.
    assert "\r" not in log and "\x1b" not in log
    assert "" not in log.splitlines()
    assert "starting Ray" in log and "waiting for the consumer groups" in log
    [run_dir] = data.iterdir()
    assert f"Ray's own log: {run_dir / 'ray.log'}" in log
    # The notices went to the file named, not nowhere: chaos killed workers.
    assert (run_dir / "ray.log").read_text()
