"""``saga run`` on a four-node Ray cluster, a worker node killed mid-run: the
real user, payment and account services, and the run's own money audit.

Run as a process of its own (``python -m tests.actors.runtime.node_death_run``,
from the repository root), since it starts its own Ray cluster
(``ray.cluster_utils.Cluster``): a head; a state node that advertises the one
``saga_state`` unit (the services and the projection writer live there, beside
their DuckDB files, as ``ray_cluster.yaml`` lays it out); two worker nodes
with ``saga_slot`` (hosts, routers, controller). Once a tenth of the sagas
ended, the worker holding host 0 is removed without a graceful stop. Prints
one JSON report: the run's summary (its audit counts every violation, money
conservation among them) and what died.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every node started here

import msgspec
import ray
from ray.cluster_utils import Cluster

from actors.app.config import SagaConfig
from actors.app.run import RunOptions, run
from actors.engine.controller import host_prefix
from actors.engine.settings import EngineSettings
from actors.runtime.placement import SLOT_RESOURCE, STATE_RESOURCE
from actors.runtime.settings import RaySettings
from tests.actors.runtime.node_death import HEALTH
from tests.actors.runtime.scenarios import main


class NodeKiller:
    """``saga run``'s progress callback: once ``share`` of the sagas ended,
    removes the worker node that holds host 0 (in a thread of its own, so the
    run's driver goes on watching)."""

    def __init__(self, cluster: Cluster, workers: list[Any], share: float) -> None:
        self._cluster = cluster
        self._workers = workers
        self._share = share
        self._thread: threading.Thread | None = None
        self.report: dict[str, Any] = {}

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        if self._thread is None and done >= total * self._share:
            self._thread = threading.Thread(target=self._kill, args=(done,))
            self._thread.start()

    def _kill(self, done: int) -> None:
        [name] = [
            n
            for n in ray.util.list_named_actors()
            if n.startswith(host_prefix("")[:-1]) and n.endswith("-0")
        ]
        host = ray.get_actor(name)
        owned = ray.get(host.ownership.remote(), timeout=30)
        victim = next(w for w in self._workers if w.node_id == owned.host.node)
        self._cluster.remove_node(victim, allow_graceful=False)
        died = time.monotonic()
        while owned.host.node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}:
            assert time.monotonic() - died < 60, "Ray never marked the node dead"
            time.sleep(0.2)
        self.report = {
            "host": name,
            "node": owned.host.node,
            "partitions_lost": sorted(owned.owned),
            "sagas_ended_at_death": done,
            "marked_dead_after_s": round(time.monotonic() - died, 2),
        }

    def join(self) -> None:
        assert self._thread is not None, "the run ended before the node was killed"
        self._thread.join()


def run_on_cluster(seed: int, sagas: int) -> dict[str, Any]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": HEALTH},
    )
    cluster.add_node(num_cpus=1, resources={STATE_RESOURCE: 1})
    workers = [
        cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: 8}) for _ in range(2)
    ]
    cluster.wait_for_nodes()
    with tempfile.TemporaryDirectory(prefix="saga-node-death-") as data_dir:
        return _run(cluster, workers, data_dir, seed, sagas)


def _run(
    cluster: Cluster, workers: list[Any], data_dir: str, seed: int, sagas: int
) -> dict[str, Any]:
    config = SagaConfig(
        ray=RaySettings(address=cluster.address),
        engine=EngineSettings(hosts=2, routers=2, host_timeout_s=4),
        data_dir=data_dir,
    )
    killer = NodeKiller(cluster, workers, share=0.1)
    said: list[str] = []
    try:
        summary = run(
            config,
            RunOptions(sagas=sagas, seed=seed, data_dir=data_dir),
            said.append,
            killer,
        )
        killer.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "summary": msgspec.to_builtins(summary),
        "killed": killer.report,
        "said": said[-20:],
    }


if __name__ == "__main__":
    main(run_on_cluster, __doc__, sagas=2_000)
