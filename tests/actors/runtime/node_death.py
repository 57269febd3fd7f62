"""A worker node killed while sagas are in flight, on a three-node Ray cluster.

Run as a process of its own (``python -m tests.actors.runtime.node_death``,
from the repository root): it starts its own Ray cluster (a head and two
worker nodes, ``ray.cluster_utils.Cluster``), which a pytest process already
connected to a local Ray cannot. Prints one JSON report; the test in
``test_node_death.py`` reads it.

The head advertises no saga slot, so hosts, routers and the controller land on
the two workers (``actors.runtime.placement``); the stand-in participant
services run in this process. A node that holds a host and a router is removed
without a graceful stop, mid-run; Ray marks it dead after its health checks (set short
here), and the controller grants the dead hosts' partitions to the live ones.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

os.environ["RAY_AUTH_MODE"] = "disabled"  # explicit, for every node started here

import ray
from ray.cluster_utils import Cluster

from actors.core import Claim, Fence
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from actors.runtime.placement import SLOT_RESOURCE
from events.transport.reader import read_to_end
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.actors.runtime.scenarios import main
from tests.actors.runtime.test_engine import (
    DEFINITIONS,
    Platform,
    audit,
    mixed_requests,
    running_platform,
    wait_finished,
    wait_terminal,
)

#: Ray's node health checks, short: a dead node is noticed in about 2 s.
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 4,
}


def lost_and_resumed(
    platform: Platform, victim_node: str, death: float
) -> tuple[dict[int, int], float]:
    """From the log alone: the partitions whose owner at ``death`` ran on the
    victim node (each with the epoch it held), and the seconds from ``death``
    to the first record a later owner appended on each; the largest.

    Not from the hosts' own reports: under load the controller moves
    partitions before the kill (a host silent past its timeout), and a host
    that lost one still lists it until its next append. The claims in the log
    say who held what, and when (their ``at``, on this machine's one clock).
    """
    fence = Fence()  # every partition read from its first offset, epoch 0
    at_death: dict[int, Claim] = {}
    firsts: dict[int, int] = {}
    starts = {TP(SAGA_EVENTS, p): 0 for p in range(platform.kafka.topics.partitions)}
    for raw in read_to_end(platform.kafka, starts):
        number = raw.partition
        record = fence.read(number, raw.value)
        claim = fence.claim(number)
        if record is None:
            if claim is not None and claim.at <= death * 1000:
                at_death[number] = claim
        elif number in at_death and record.epoch > at_death[number].epoch:
            firsts.setdefault(number, record.at)
    lost = {p: c.epoch for p, c in at_death.items() if c.node == victim_node}
    assert lost, f"no claim in force at the kill was the victim's: {at_death}"
    # Sagas were in flight at the kill (the test checks): some lost
    # partition has records to resume, which only a new owner can append.
    resumed = {p: at for p, at in firsts.items() if p in lost}
    assert resumed, f"no new owner wrote on any of partitions {sorted(lost)}"
    return lost, max(at / 1000 - death for at in resumed.values())


def run(seed: int, sagas: int) -> dict[str, Any]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": HEALTH},
    )
    workers = [
        cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: 8}) for _ in range(2)
    ]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    with running_platform() as platform:
        engine = Engine(
            platform.kafka,
            EngineSettings(hosts=2, routers=2, host_timeout_s=4),
            DEFINITIONS,
        )
        try:
            report = _kill_a_node(platform, engine, cluster, workers, seed, sagas)
        finally:
            engine.stop()
    ray.shutdown()
    cluster.shutdown()
    return report


def _kill_a_node(
    platform: Platform,
    engine: Engine,
    cluster: Cluster,
    workers: list[Any],
    seed: int,
    sagas: int,
) -> dict[str, Any]:
    reports = ray.get([h.ownership.remote() for h in engine.hosts])
    hosts = {r.host.name: r for r in reports}
    on_workers = {w.node_id for w in workers}
    placed = {name: r.host.node for name, r in hosts.items()}
    # A node that holds a host and a router: both must come back elsewhere.
    routers_before = [s.node for s in engine.router_stats()]
    victim_node = next(
        (n for n in (r.host.node for r in hosts.values()) if n in routers_before),
        None,
    )
    assert victim_node, f"no node holds a host and a router: {placed} {routers_before}"
    victim = next(w for w in workers if w.node_id == victim_node)
    on_victim = [
        h
        for h, r in zip(engine.hosts, reports, strict=True)
        if r.host.node == victim_node
    ]
    requests, expected = mixed_requests(sagas, seed=seed)
    ids = platform.client.start_many(requests)
    wait_finished(engine, sagas // 10)
    # Straight on to the kill: under load, every second spent here ends
    # hundreds of the sagas the kill should catch in flight.
    in_flight = sum(r.in_flight for r in ray.get([h.stats.remote() for h in on_victim]))
    death = time.time()
    cluster.remove_node(victim, allow_graceful=False)
    started = time.monotonic()
    while True:
        owners = engine.owners()
        if all(o.state == "owned" and o.node != victim_node for o in owners):
            break
        assert time.monotonic() - started < 120, f"partitions never moved: {owners}"
        time.sleep(0.1)
    moved_s = time.monotonic() - started
    states = wait_terminal(platform.client, ids, timeout_s=240)
    outcomes = Counter(states[i].status for i in ids)
    assert outcomes == expected, (outcomes, expected)
    audit(platform, states, ids)
    # Ray restarted the dead node's hosts on the surviving one.
    after = ray.get([h.ownership.remote() for h in engine.hosts], timeout=120)
    routers_after = ray.get([r.stats.remote() for r in engine.routers], timeout=120)
    lost, resumed_s = lost_and_resumed(platform, victim_node, death)
    return {
        "seed": seed,
        "sagas": sagas,
        "placed_on_workers": all(node in on_workers for node in placed.values()),
        "victim_node": victim_node,
        "partitions_lost": sorted(lost),
        # Each lost partition with the epoch it was held at when the node died.
        "epochs_at_death": sorted(lost.items()),
        "in_flight_at_death": in_flight,
        "node_dead": victim_node
        not in {n["NodeID"] for n in ray.nodes() if n["Alive"]},
        "owners_after": [[o.partition, o.host, o.epoch] for o in engine.owners()],
        "hosts_after_on": sorted({r.host.node for r in after}),
        "routers_before_on": routers_before,
        "routers_after_on": [r.node for r in routers_after],
        "moved_s": round(moved_s, 2),
        "resumed_s": round(resumed_s, 2),
        "outcomes": {s.value: n for s, n in outcomes.items()},
    }


if __name__ == "__main__":
    main(run, __doc__, sagas=3_000)
