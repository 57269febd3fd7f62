"""Partitions moving between hosts while sagas run: the scenarios, each on a
platform of its own and whatever Ray the caller connected to (a multi-node
cluster: ``cluster_moves.py``).

Hosts added and removed mid-run, a second engine started on the same consumer
group (a rolling deploy), and a host SIGSTOPped past the controller's timeout:
every saga ends, no effect is applied twice, and no saga is driven by two hosts
(no two different records for one ``(sagaId, seq)`` on ``saga.events``, fenced
or not). Each asserts what it proves and reports what it saw.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import ray

from actors.core import Fence, LogCodec, LogRecord
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.actors.runtime.test_engine import (
    DEFINITIONS,
    PARTITIONS,
    Platform,
    audit,
    mixed_requests,
    wait_finished,
    wait_terminal,
)
from tests.conftest import process_state


def driven_twice(
    kafka: KafkaSettings, *, fence: Fence | None = None
) -> dict[tuple[str, int], int]:
    """``(sagaId, seq)`` with more than one distinct record in the log: every
    record, or (with a ``fence``) those a reader applies."""
    codec = LogCodec()
    seen: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    tps = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    for raw in read_to_end(kafka, tps):
        entry = codec.decode(raw.value)
        if fence is not None and not fence.admit(raw.partition, entry):
            continue
        if isinstance(entry, LogRecord):
            seen[(entry.saga_id, entry.seq)].add(codec.encode(entry.events))
    return {key: len(v) for key, v in seen.items() if len(v) > 1}


def host_names(engine: Engine) -> set[str]:
    return {r.host.name for r in ray.get([h.ownership.remote() for h in engine.hosts])}


def nodes_of(engine: Engine) -> set[str]:
    """The Ray nodes the engine's hosts run on."""
    return {r.host.node for r in ray.get([h.ownership.remote() for h in engine.hosts])}


def hosts_added_and_removed(platform: Platform, seed: int) -> dict[str, Any]:
    engine = platform.engine()
    try:
        before = {o.partition: o.host for o in engine.owners()}
        requests, expected = mixed_requests(1_000, seed=seed)
        ids = platform.client.start_many(requests)
        wait_finished(engine, 50)
        engine.scale(4)
        grown = {o.partition: o.host for o in engine.owners()}
        assert len(set(grown.values())) == 4
        nodes = nodes_of(engine)
        wait_finished(engine, 300)
        engine.scale(1)
        shrunk = {o.partition: (o.host, o.epoch) for o in engine.owners()}
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        assert not driven_twice(platform.kafka)
        # The moves really happened, each at a higher epoch: to the new hosts,
        # then all of them to the one host left.
        [last] = {host for host, _ in shrunk.values()}
        assert sum(before[p] != grown[p] for p in before) >= PARTITIONS // 3
        moved = [p for p in before if before[p] != last]
        assert moved and all(shrunk[p][1] >= 2 for p in moved)
        assert len(engine.hosts) == 1
        return {"hosts_nodes": sorted(nodes), "moved": len(moved), "sagas": len(ids)}
    finally:
        engine.stop()


def second_engine_fences_the_first(platform: Platform, seed: int) -> dict[str, Any]:
    """A rolling deploy: the new engine claims every partition, the old one's
    hosts find their claims replaced and drop them; stopping the old engine
    loses nothing."""
    group = f"orchestrator-{uuid.uuid4().hex[:6]}"
    old = platform.engine(group_id=group)
    new: Engine | None = None
    try:
        requests, expected = mixed_requests(600, seed=seed)
        ids = platform.client.start_many(requests)
        wait_finished(old, 50)
        new = Engine(
            platform.kafka,
            EngineSettings(hosts=2, routers=1),
            DEFINITIONS,
            group_id=group,
        )
        # Every partition is the new engine's, and the old engine knows it:
        # its hosts own none (those that held one found the newer claim), and
        # its controller leaves every one to the new engine's hosts.
        newer = host_names(new)
        assert {o.host for o in new.owners()} <= newer
        deadline = time.monotonic() + 30
        while True:
            reports = ray.get([h.ownership.remote() for h in old.hosts])
            seen = old.owners()
            if not any(r.owned for r in reports) and all(
                o.state == "other engine" and o.host in newer for o in seen
            ):
                break
            assert time.monotonic() < deadline, f"the old engine holds on: {seen}"
            time.sleep(0.2)
        fenced = [p for r in reports for p in r.fenced]
        assert fenced, "no old host met a newer claim"
        assert all(t.engine == new.id for r in reports for t in r.fenced.values())
        old.stop()
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        assert not driven_twice(platform.kafka)
        return {"fenced_partitions": sorted(fenced), "sagas": len(ids)}
    finally:
        if new is not None:
            new.stop()
        old.stop()


def paused_host_is_fenced(platform: Platform, seed: int) -> dict[str, Any]:
    """SIGSTOP a host past the controller's timeout: its partitions are granted
    to the other host, sagas go on; woken, it finds the newer claims and drops
    what it held, and nothing it might write is applied."""
    engine = Engine(
        platform.kafka,
        EngineSettings(hosts=2, routers=1, host_timeout_s=3),
        DEFINITIONS,
    )
    try:
        requests, expected = mixed_requests(600, seed=seed)
        victim = engine.hosts[random.Random(seed).randrange(2)]
        held = ray.get(victim.ownership.remote())
        ids = platform.client.start_many(requests)
        wait_finished(engine, 50)
        os.kill(held.host.pid, signal.SIGSTOP)
        try:
            assert process_state(held.host.pid) == "T", "the host did not stop"
            deadline = time.monotonic() + 60
            while any(
                o.host == held.host.name or o.state != "owned" for o in engine.owners()
            ):
                assert time.monotonic() < deadline, "its partitions never moved"
                time.sleep(0.2)
            moved = {o.partition: o.epoch for o in engine.owners()}
        finally:
            os.kill(held.host.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while set(ray.get(victim.ownership.remote()).fenced) != set(held.owned):
            assert time.monotonic() < deadline, "the woken host never saw the claims"
            time.sleep(0.2)
        fenced = ray.get(victim.ownership.remote()).fenced
        assert all(fenced[p].epoch >= moved[p] > held.owned[p] for p in held.owned)
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        # What it appended after the claims (a batch queued while it slept)
        # is in the log, and skipped by every reader.
        fence = Fence()
        assert not driven_twice(platform.kafka, fence=fence)
        return {
            "paused_node": held.host.node,
            "fenced_partitions": sorted(fenced),
            "records_skipped": fence.skipped,
            "sagas": len(ids),
        }
    finally:
        engine.stop()
