"""``ensure_ray``: with no address configured, a Ray of the command's own."""

from __future__ import annotations

import json
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
