"""``saga serve`` on a Ray cluster, its driver killed and started again, then
scaled from the command line (see ``driver_restart.py``)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.broker


def test_a_named_engine_outlives_a_killed_saga_serve() -> None:
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    done = subprocess.run(
        [
            sys.executable, "-m", "tests.actors.runtime.driver_restart",
            "--seed", str(seed),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)
    # The driver really died and the actors did not: the same processes,
    # found again by the second saga serve; then scaled, then stopped.
    assert len(report["actors_before"]) >= 4  # controller, host(s), router, writer
    assert report["survived_the_driver"]
    assert report["second_driver_went_on_with_them"]
    assert report["hosts_after_scale"] == 3
    assert report["serve_exit"] == 0 and report["left_running"] == []
