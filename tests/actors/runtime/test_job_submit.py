"""``saga serve`` as a Ray Job: ``ray job submit --working-dir . -- saga serve
--ray-address auto``, sagas through it, then ``ray job stop`` (see
``job_submit.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker

# Ray's dashboard and job server (ray[default]), installed by tests/setup.sh
# beside the environment rather than in it: importable, they would make every
# node of every other test's cluster run Ray's full dashboard agent.
RAY_DEFAULT = Path(sys.prefix) / "ray-default"


def test_saga_serve_runs_as_a_ray_job_and_stops_with_it() -> None:
    dashboard = subprocess.run(
        [sys.executable, "-c", "import ray.dashboard.optional_deps"],
        env={**os.environ, "PYTHONPATH": str(RAY_DEFAULT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert dashboard.returncode == 0, (
        f"ray[default] is not importable from {RAY_DEFAULT}: run tests/setup.sh\n"
        + dashboard.stderr[-2000:]
    )
    report = report_of("tests.actors.runtime.job_submit", path=(RAY_DEFAULT,))
    # The job ran saga serve from the uploaded working directory...
    assert report["working_dir"] and report["package"], report
    assert report["serve_said_running"]
    # ...whose engine (controller, hosts, router, projection writer) took the
    # sagas to their expected outcomes with every effect once (the scenario
    # asserts both)...
    assert len(report["engine_actors"]) >= 4
    assert sum(report["outcomes"].values()) == 1_000
    # ...and `ray job stop` stopped it cleanly: SIGTERM, the engine's actors
    # stopped by saga serve itself, none left behind.
    assert report["stopped"] and report["serve_said_stopping"]
    assert report["left_running"] == []
