"""A worker node killed while sagas are in flight (see ``node_death.py``): its
hosts' partitions are granted to live hosts, every saga ends as it should, no
effect is applied twice, and the time to resume is measured."""

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


def test_a_worker_node_killed_mid_run_loses_no_saga() -> None:
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    done = subprocess.run(
        [sys.executable, "-m", "tests.actors.runtime.node_death", "--seed", str(seed)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)
    # The fault fired where it matters: the node that held hosts is dead, and
    # sagas were in flight on its partitions.
    assert report["placed_on_workers"], "saga actors landed on the head"
    assert report["node_dead"] and report["partitions_lost"]
    assert report["in_flight_at_death"] > 0
    assert all(
        epoch >= 2
        for p, _, epoch in report["owners_after"]
        if p in report["partitions_lost"]
    )
