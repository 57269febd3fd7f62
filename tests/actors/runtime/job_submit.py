"""``saga serve`` started as a Ray Job, the way the README and
``ray_cluster.yaml`` start the platform:

    ray job submit --address http://HEAD:8265 --working-dir . \\
        -- saga serve --ray-address auto ...

Run as a process of its own (``python -m tests.actors.runtime.job_submit``
from the repository root, with Ray's dashboard and job server importable:
``ray[default]``, which ``tests/setup.sh`` installs beside the environment in
``.venv/ray-default``; ``test_job_submit.py`` puts it on the path). It starts a
one-node cluster with the dashboard (where the job server lives), submits the
job with the repository as its working directory, runs sagas through the
engine the job started, then stops the job with ``ray job stop``, which must
stop every actor of the engine. Prints one JSON report.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every process here
# `ray job stop` sends SIGTERM, then SIGKILL after this many seconds (3 by
# default): a clean stop of every actor of the engine takes longer. Read by
# the job's supervisor, a process of this cluster, which inherits it.
os.environ["RAY_JOB_STOP_WAIT_TIME_S"] = "60"
# The job's entrypoint is `saga ...` on the node's PATH, as on a node where
# the project is installed (ray_cluster.yaml's setup commands).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

import ray
from ray.cluster_utils import Cluster
from ray.job_submission import JobStatus, JobSubmissionClient

from actors.runtime.placement import SLOT_RESOURCE
from tests.actors.runtime.scenarios import ROOT, main
from tests.actors.runtime.test_engine import (
    PARTITIONS,
    audit,
    mixed_requests,
    running_platform,
    wait_terminal,
)

NAME = "job"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ray_cli(*args: str) -> str:
    """The ``ray`` command line, as an operator runs it; its output."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"ray {args[:2]}: {done.stdout}{done.stderr}"[-4000:]
    return done.stdout + done.stderr


def wait_for(what: str, check: Any, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def engine_actors() -> list[str]:
    return sorted(n for n in ray.util.list_named_actors() if NAME in n)


def run(seed: int, sagas: int) -> dict[str, Any]:
    dashboard = free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {SLOT_RESOURCE: 16},
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard,
        },
    )
    ray.init(address=cluster.address, namespace="saga", log_to_driver=False)
    data_dir = tempfile.mkdtemp(prefix="saga-job-")
    address = f"http://127.0.0.1:{dashboard}"
    try:
        with running_platform() as platform:
            bootstrap = ",".join(platform.kafka.bootstrap_servers)
            jobs = JobSubmissionClient(address)
            submitted = ray_cli(
                "job", "submit", "--address", address, "--working-dir", str(ROOT),
                "--no-wait", "--",
                "saga", "serve", "--ray-address", "auto",
                "--bootstrap-servers", bootstrap, "--partitions", str(PARTITIONS),
                "--set", f"engine.name={NAME}", "--data-dir", data_dir,
                "--every", "1",
            )  # fmt: skip
            job_id = next(
                word.strip("'")
                for line in submitted.splitlines()
                if "submitted successfully" in line
                for word in line.split()
                if word.strip("'").startswith("raysubmit_")
            )

            def running() -> bool:
                status = jobs.get_job_status(job_id)
                assert not status.is_terminal(), jobs.get_job_logs(job_id)[-4000:]
                return "engine running" in jobs.get_job_logs(job_id)

            wait_for("the job's saga serve to run", running)
            actors = engine_actors()
            requests, expected = mixed_requests(sagas, seed=seed)
            ids = platform.client.start_many(requests)
            states = wait_terminal(platform.client, ids, timeout_s=240)
            outcomes = Counter(states[i].status for i in ids)
            assert outcomes == expected, (outcomes, expected)
            audit(platform, states, ids)
            ray_cli("job", "stop", "--address", address, job_id)
            wait_for(
                "the job to end", lambda: jobs.get_job_status(job_id).is_terminal()
            )
            info = jobs.get_job_info(job_id)
            logs = jobs.get_job_logs(job_id)
            left = engine_actors()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "seed": seed,
        "job_status": str(info.status),
        "driver_node": info.driver_node_id,
        "engine_actors": actors,
        "left_running": left,
        "serve_said_running": "engine running" in logs,
        "serve_said_stopping": "stopping" in logs.splitlines(),
        "working_dir": "working_dir" in (info.runtime_env or {}),
        "package": [line for line in submitted.splitlines() if "_ray_pkg_" in line],
        "outcomes": {s.value: n for s, n in outcomes.items()},
        "stopped": info.status == JobStatus.STOPPED,
    }


if __name__ == "__main__":
    main(run, __doc__, sagas=1_000)
