"""Partitions moving on a three-node Ray cluster: hosts added and removed, a
second engine on the same group, a SIGSTOPped host (the scenarios of
``moving.py``), each on a platform of its own.

Run as a process of its own (``python -m tests.actors.runtime.cluster_moves``,
from the repository root): it starts its own Ray cluster (a head that
advertises no saga slot, and two worker nodes that do,
``ray.cluster_utils.Cluster``), which a pytest process already connected to a
local Ray cannot. Prints one JSON report; ``test_cluster_moves.py`` reads it.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every node started here

import ray
from ray.cluster_utils import Cluster

from actors.runtime.placement import SLOT_RESOURCE
from tests.actors.runtime.moving import (
    hosts_added_and_removed,
    paused_host_is_fenced,
    second_engine_fences_the_first,
)
from tests.actors.runtime.scenarios import main
from tests.actors.runtime.test_engine import running_platform


def run(seed: int, sagas: int) -> dict[str, Any]:
    del sagas  # each scenario runs its own count
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [
        cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: 8}) for _ in range(2)
    ]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    report: dict[str, Any] = {
        "seed": seed,
        "nodes": len([n for n in ray.nodes() if n["Alive"]]),
        "workers": sorted(w.node_id for w in workers),
    }
    try:
        for name, scenario in (
            ("added_and_removed", hosts_added_and_removed),
            ("second_engine", second_engine_fences_the_first),
            ("paused_host", paused_host_is_fenced),
        ):
            with running_platform() as platform:
                report[name] = scenario(platform, seed)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return report


if __name__ == "__main__":
    main(run, __doc__, sagas=0)
