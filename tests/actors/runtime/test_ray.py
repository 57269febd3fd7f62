"""``ensure_ray``: with no address configured, a Ray of the command's own; with
one where no cluster answers, a clear error in bounded time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# In a process of its own: this pytest process is connected to a Ray already.
# The cluster is left running while ensure_ray runs, as one a killed test run
# (or a `ray start` long forgotten) leaves behind, its address in
# /tmp/ray/ray_current_cluster.
LEFT_BEHIND = """
import json, os
os.environ["RAY_AUTH_MODE"] = "disabled"
import ray
from ray._private.utils import read_ray_address
from ray.cluster_utils import Cluster
from actors.runtime.ray import ensure_ray
from actors.runtime.settings import RaySettings

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
try:
    left = read_ray_address()
    info = ensure_ray(RaySettings(num_cpus=2), quiet=True)
    print(json.dumps({
        "cluster": cluster.gcs_address,
        "left": left,
        "joined": info["gcs_address"],
        "cpus": ray.cluster_resources().get("CPU"),
    }))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def test_no_address_starts_a_local_ray_beside_a_cluster_left_running() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEFT_BEHIND],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The fault was there: the address file named the running cluster, which
    # ray.init() with no address joins (and then refuses num_cpus).
    assert report["left"] == report["cluster"]
    # ensure_ray started its own Ray instead, with the CPUs it was given.
    assert report["joined"] != report["cluster"]
    assert report["cpus"] == 2


def _scale(address: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``saga scale`` of an engine on the cluster at ``address``: it joins Ray
    before it touches Kafka, whose address here is never reached."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "actors.app.cli", "scale", "--name", "prod",
         "--hosts", "2", "--bootstrap-servers", "127.0.0.1:9",
         "--ray-address", address, "--data-dir", str(data_dir),
         "--set", "ray.connect_timeout_s=2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_an_address_where_no_cluster_listens_is_an_error_naming_it(
    tmp_path: Path,
) -> None:
    # A port bound and not listening: connections to it are refused, and no
    # other process can take it while the command runs.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        done = _scale(f"127.0.0.1:{port}", tmp_path)
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: no Ray cluster answered at ")
    assert f":{port} (ray.address '127.0.0.1:{port}') within 2 s" in error
    assert "Connection refused" in error and "ray status --address" in error


def test_auto_with_no_cluster_to_find_is_an_error_saying_what_to_set(
    tmp_path: Path,
) -> None:
    from ray._private.utils import read_ray_address

    # "auto" falls back to the address file: with one there (a cluster of
    # another test running) the command would wait on it instead.
    assert read_ray_address() is None
    done = _scale("auto", tmp_path)
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: no Ray cluster found for ray.address 'auto': ")
    assert "Set --ray-address (ray.address) to the head's host:port." in error
