"""``saga serve`` on a Ray cluster, killed and started again, then scaled.

Run as a process of its own (``python -m tests.actors.runtime.driver_restart``
from the repository root), since it starts its own Ray cluster (one node,
``ray.cluster_utils.Cluster``, advertising saga slots). ``saga serve
--ray-address auto`` (the cluster found through ``RAY_ADDRESS``) runs against
it as a separate process with a named engine;
sagas start; the serve process is killed with SIGKILL (a driver that dies);
its detached actors go on; a second ``saga serve`` with the same name goes on
with them; ``saga scale`` adds hosts; Ctrl-C (SIGINT) stops it all. Prints
one JSON report; ``test_driver_restart.py`` reads it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every process here

import ray
from ray.cluster_utils import Cluster

from actors.runtime.placement import SLOT_RESOURCE
from tests.actors.runtime.scenarios import main
from tests.actors.runtime.test_engine import (
    PARTITIONS,
    Platform,
    audit,
    mixed_requests,
    running_platform,
    wait_terminal,
)

NAME = "restarted"


def saga(*args: str, address: str, bootstrap: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "actors.app.cli",
        *args,
        "--ray-address",
        address,
        "--bootstrap-servers",
        bootstrap,
        "--partitions",
        str(PARTITIONS),
    ]


def serve(address: str, bootstrap: str, data_dir: str) -> subprocess.Popen[str]:
    """``saga serve --ray-address auto`` of the named engine, as on a node of
    the cluster (``auto`` finds it by ``RAY_ADDRESS``, as a Ray Job's
    entrypoint does); returns once it runs."""
    process = subprocess.Popen(
        saga(
            "serve",
            "--set",
            f"engine.name={NAME}",
            "--data-dir",
            data_dir,
            "--every",
            "1",
            address="auto",
            bootstrap=bootstrap,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAY_ADDRESS": address},
    )
    assert process.stdout is not None
    out = process.stdout
    deadline = time.monotonic() + 120
    for line in out:
        if line.startswith("engine running"):
            # Its status lines must not fill the pipe and block it.
            threading.Thread(target=out.read, daemon=True).start()
            return process
        assert time.monotonic() < deadline, "saga serve did not start"
    raise AssertionError(f"saga serve ended before it ran: {process.wait()}")


def named_pids() -> dict[str, int]:
    """The engine's live named actors and their processes."""
    names = [n for n in ray.util.list_named_actors() if NAME in n]
    handles = {n: ray.get_actor(n) for n in names}
    return {n: ray.get(h.pid.remote(), timeout=30) for n, h in handles.items()}


def run(seed: int, sagas: int) -> dict[str, Any]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {SLOT_RESOURCE: 16}},
    )
    address = cluster.address
    ray.init(address=address, namespace="saga", log_to_driver=False)
    data_dir = tempfile.mkdtemp(prefix="saga-restart-")
    try:
        with running_platform() as platform:
            bootstrap = ",".join(platform.kafka.bootstrap_servers)
            report = _restart(platform, address, bootstrap, data_dir, seed, sagas)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return report


def _restart(
    platform: Platform,
    address: str,
    bootstrap: str,
    data_dir: str,
    seed: int,
    sagas: int,
) -> dict[str, Any]:
    first = serve(address, bootstrap, data_dir)
    before = named_pids()
    requests, expected = mixed_requests(sagas, seed=seed)
    ids = platform.client.start_many(requests)
    time.sleep(0.5)  # some sagas under way when the driver dies
    first.send_signal(signal.SIGKILL)
    first.wait()
    survived = named_pids()
    second = serve(address, bootstrap, data_dir)
    attached = named_pids()
    scaled = subprocess.run(
        saga(
            "scale", "--name", NAME, "--hosts", "3", "--json",
            address=address, bootstrap=bootstrap,
        ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert scaled.returncode == 0, scaled.stderr[-3000:]
    owners = json.loads(scaled.stdout)["owners"]
    states = wait_terminal(platform.client, ids, timeout_s=240)
    outcomes = Counter(states[i].status for i in ids)
    assert outcomes == expected, (outcomes, expected)
    audit(platform, states, ids)
    # As a Ray job's entrypoint or a shell on a node would: "auto" finds the
    # cluster by RAY_ADDRESS.
    status = subprocess.run(
        saga(
            "status", "--engine", NAME, "--data-dir", data_dir, "--json",
            address="auto", bootstrap=bootstrap,
        ),
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "RAY_ADDRESS": address},
    )  # fmt: skip
    assert status.returncode == 0, status.stderr[-3000:]
    second.send_signal(signal.SIGINT)
    stopped = second.wait(timeout=120)
    return {
        "seed": seed,
        "actors_before": sorted(before),
        "survived_the_driver": survived == before,
        "second_driver_went_on_with_them": attached == before,
        "hosts_after_scale": len({o["host"] for o in owners}),
        "live_owners": json.loads(status.stdout)["live_owners"],
        "serve_exit": stopped,
        "left_running": sorted(n for n in ray.util.list_named_actors() if NAME in n),
        "outcomes": {s.value: n for s, n in outcomes.items()},
    }


if __name__ == "__main__":
    main(run, __doc__, sagas=2_000)
