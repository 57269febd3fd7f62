"""``ensure_ray``: with no address configured, a Ray of the command's own; with
one where no cluster answers, a clear error in bounded time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
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


def _scale(
    data_dir: Path, *flags: str, ray_address: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``saga scale`` of an engine on a cluster: it joins Ray before it touches
    Kafka, whose address here is never reached."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.run(
        [sys.executable, "-m", "actors.app.cli", "scale", "--name", "prod",
         "--hosts", "2", "--bootstrap-servers", "127.0.0.1:9",
         "--data-dir", str(data_dir), "--set", "ray.connect_timeout_s=2", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound and not listening: connections to it are refused, and no
    other process can take it while the command runs."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_an_address_where_no_cluster_listens_is_an_error_naming_it(
    tmp_path: Path, refused_port: int
) -> None:
    address = f"127.0.0.1:{refused_port}"
    error = _error(_scale(tmp_path, "--ray-address", address), 1)
    assert error.startswith("error: no Ray cluster answered at ")
    # Ray resolves 127.0.0.1 to this node's address: the port is what stays.
    assert f":{refused_port} (ray.address '{address}') within 2 s" in error
    assert "Connection refused" in error and "ray status --address" in error


def test_ray_address_in_the_environment_stands_in_for_no_address(
    tmp_path: Path, refused_port: int
) -> None:
    # As for ray.init, and as a Ray Job's entrypoint has it: the cluster it
    # names is joined (here: tried, and refused).
    address = f"127.0.0.1:{refused_port}"
    error = _error(_scale(tmp_path, ray_address=address), 1)
    assert f"(RAY_ADDRESS '{address}') within 2 s" in error


def test_a_dashboard_address_is_refused_for_what_it_is(tmp_path: Path) -> None:
    # RAY_ADDRESS set for `ray job submit` on an operator's machine, and
    # `auto`: ray.init would take it for a Ray Client address.
    error = _error(
        _scale(tmp_path, "--ray-address", "auto", ray_address="http://head:8265"),
        2,
    )
    assert error.startswith(
        "error: ray.address 'auto' (RAY_ADDRESS 'http://head:8265') is a Ray "
        "Client or dashboard address"
    )
    assert "`ray job submit`" in error
