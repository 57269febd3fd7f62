"""Partitions moving under ``saga run`` on a four-node Ray cluster, with the
real user, payment and account services and the run's own money audit.

Run as a process of its own (``python -m tests.actors.runtime.cluster_runs``,
from the repository root): it starts its own Ray cluster
(``ray.cluster_utils.Cluster``: a head; a ``saga_state`` node for the
services and the projection writer; two ``saga_slot`` workers for hosts,
routers and controllers) and an embedded broker, then runs ``saga run``
three times, each with one move struck from its progress callback once a
share of its sagas ended (300 in flight):

- hosts added (to four, over both workers) and then removed (to one);
- a second engine started on the same consumer group (a rolling deploy), left
  running beside the first, which it fences off every partition;
- a host SIGSTOPped past the controller's host timeout, then woken: a zombie.

Each run's summary carries its audit (money conservation, each effect once,
every saga ended, lag 0, the projection equal to the log); after each, the
log is read for two different records of one ``(sagaId, seq)`` (a saga
driven by two hosts), fenced or not. Prints one JSON report;
``test_cluster_runs.py`` reads it.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every node started here

import msgspec
import ray
from ray.cluster_utils import Cluster

from actors.app.config import SagaConfig
from actors.app.run import RunOptions, run
from actors.core import Fence
from actors.engine.controller import actor_names, controller_name
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from actors.runtime.placement import SLOT_RESOURCE, STATE_RESOURCE
from actors.runtime.settings import RaySettings
from events.transport.broker import EmbeddedBroker
from events.transport.settings import KafkaSettings
from tests.actors.runtime.moving import driven_twice
from tests.actors.runtime.scenarios import main
from tests.conftest import process_state


class Strike:
    """``saga run``'s progress callback: once ``share`` of the sagas ended,
    runs ``act`` (once) before the run goes on, so the run cannot end before
    the move it strikes: the sagas in flight then (the run's window) go on
    meanwhile, and the rest are sent after."""

    def __init__(self, share: float, act: Callable[[], dict[str, Any]]) -> None:
        self._share = share
        self._act = act
        self.result: dict[str, Any] | None = None

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        if self.result is None and done >= total * self._share:
            self.result = self._act()


def running_engine(kafka: KafkaSettings) -> Engine:
    """The run's engine, found by its controller's name."""
    [name] = actor_names(controller_name(""))
    engine_id = name.removeprefix(controller_name(""))
    return Engine(kafka, EngineSettings(name=engine_id), attach=True)


def hosts_added_and_removed(kafka: KafkaSettings, keep: list[Any]) -> dict[str, Any]:
    engine = running_engine(kafka)
    engine.scale(4)
    grown = {o.partition: (o.host, o.node) for o in engine.owners()}
    engine.scale(1)
    shrunk = {o.partition: (o.host, o.epoch) for o in engine.owners()}
    return {
        "hosts_grown": len({h for h, _ in grown.values()}),
        "nodes_grown": sorted({n for _, n in grown.values()}),
        "hosts_shrunk": len({h for h, _ in shrunk.values()}),
        "epochs_shrunk": sorted({e for _, e in shrunk.values()}),
    }


def second_engine(kafka: KafkaSettings, keep: list[Any]) -> dict[str, Any]:
    """A newer engine beside the run's, on its consumer group; kept running
    (in ``keep``) until the run ends: dropping the handles that made its
    actors would end them on the spot."""
    old = running_engine(kafka)
    new = Engine(kafka, EngineSettings(hosts=2, routers=1))
    keep.append(new)
    newer = {r.host.name for r in ray.get([h.ownership.remote() for h in new.hosts])}
    deadline = time.monotonic() + 60
    while True:
        reports = ray.get([h.ownership.remote() for h in old.hosts])
        seen = old.owners()
        if not any(r.owned for r in reports) and all(
            o.state == "other engine" and o.host in newer for o in seen
        ):
            break
        assert time.monotonic() < deadline, f"the old engine holds on: {seen}"
        time.sleep(0.2)
    return {
        "fenced": sorted({p for r in reports for p in r.fenced}),
        "fenced_by": sorted({t.engine for r in reports for t in r.fenced.values()}),
        "newer": new.id,
    }


def paused_host(kafka: KafkaSettings, keep: list[Any]) -> dict[str, Any]:
    engine = running_engine(kafka)
    victim = engine.hosts[0]
    held = ray.get(victim.ownership.remote())
    paused_at = int(time.time() * 1000)
    os.kill(held.host.pid, signal.SIGSTOP)
    try:
        assert process_state(held.host.pid) == "T", "the host did not stop"
        deadline = time.monotonic() + 60
        while any(
            o.host == held.host.name or o.state != "owned" for o in engine.owners()
        ):
            assert time.monotonic() < deadline, "its partitions never moved"
            time.sleep(0.2)
    finally:
        os.kill(held.host.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while not set(held.owned) <= set(ray.get(victim.ownership.remote()).fenced):
        assert time.monotonic() < deadline, "the woken host never saw the claims"
        time.sleep(0.2)
    fenced = ray.get(victim.ownership.remote()).fenced
    return {
        "node": held.host.node,
        "held": sorted(held.owned),
        "claimed_meanwhile": sorted(p for p, t in fenced.items() if t.at >= paused_at),
    }


def run_on_cluster(seed: int, sagas: int) -> dict[str, Any]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={STATE_RESOURCE: 1})
    workers = [
        cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: 8}) for _ in range(2)
    ]
    cluster.wait_for_nodes()
    report: dict[str, Any] = {"seed": seed, "workers": [w.node_id for w in workers]}
    try:
        for name, share, act in (
            ("added_and_removed", 0.05, hosts_added_and_removed),
            ("second_engine", 0.1, second_engine),
            ("paused_host", 0.1, paused_host),
        ):
            report[name] = _one_run(cluster.address, seed, sagas, share, act)
    finally:
        cluster.shutdown()
    return report


def _one_run(
    address: str,
    seed: int,
    sagas: int,
    share: float,
    act: Callable[[KafkaSettings, list[Any]], dict[str, Any]],
) -> dict[str, Any]:
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as data_dir:
        config = SagaConfig(
            kafka=KafkaSettings(bootstrap_servers=(broker.bootstrap,)),
            ray=RaySettings(address=address),
            engine=EngineSettings(hosts=2, routers=1, host_timeout_s=3),
            data_dir=data_dir,
        )
        # What the strike started lives until the run (and its Ray) ends.
        keep: list[Any] = []
        strike = Strike(share, lambda: act(config.kafka, keep))
        said: list[str] = []
        summary = run(
            config,
            RunOptions(sagas=sagas, seed=seed, data_dir=data_dir, max_in_flight=300),
            said.append,
            strike,
        )
        struck = strike.result
        assert struck is not None, "the run ended before the strike"
        fence = Fence()
        return {
            "summary": msgspec.to_builtins(summary),
            "struck": struck,
            "driven_twice": len(driven_twice(config.kafka)),
            "driven_twice_applied": len(driven_twice(config.kafka, fence=fence)),
            "records_skipped": fence.skipped,
            "said": said[-12:],
        }


if __name__ == "__main__":
    main(run_on_cluster, __doc__, sagas=1_000)
