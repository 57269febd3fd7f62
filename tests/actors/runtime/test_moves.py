"""Partitions moving between hosts while sagas run, on a local Ray.

Hosts added and removed mid-run, and a second engine started on the same
consumer group (a rolling deploy): every saga ends, no effect is applied twice,
and no saga is driven by two hosts (no two different records for one
``(sagaId, seq)`` on ``saga.events``, fenced or not).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.app.cli import main
from actors.core import Fence, LogCodec, LogRecord
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from actors.runtime.projection import start_projection
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
    running_platform,
    wait_finished,
    wait_terminal,
)
from tests.conftest import process_state

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def platform() -> Iterator[Platform]:
    with running_platform() as running:
        yield running


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


def test_hosts_added_and_removed_mid_run_move_partitions_safely(
    platform: Platform,
) -> None:
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    engine = platform.engine()
    try:
        before = {o.partition: o.host for o in engine.owners()}
        requests, expected = mixed_requests(1_000, seed=seed)
        ids = platform.client.start_many(requests)
        wait_finished(engine, 50)
        engine.scale(4)
        grown = {o.partition: o.host for o in engine.owners()}
        assert len(set(grown.values())) == 4
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
        print(f"owners: {before} -> {grown} -> {shrunk}")
    finally:
        engine.stop()


def test_a_second_engine_on_the_group_fences_the_first(platform: Platform) -> None:
    """A rolling deploy: the new engine claims every partition, the old one's
    hosts find their claims replaced and drop them; stopping the old engine
    loses nothing."""
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
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
        newer = _names(new)
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
        assert any(r.fenced for r in reports), "no old host met a newer claim"
        assert all(t.engine == new.id for r in reports for t in r.fenced.values())
        old.stop()
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        assert not driven_twice(platform.kafka)
    finally:
        if new is not None:
            new.stop()
        old.stop()


def pids_of(engine: Engine) -> list[int]:
    return [r.host.pid for r in ray.get([h.ownership.remote() for h in engine.hosts])]


def _names(engine: Engine) -> set[str]:
    return {r.host.name for r in ray.get([h.ownership.remote() for h in engine.hosts])}


def test_status_of_every_partition_names_its_owner(platform: Platform) -> None:
    engine = platform.engine()
    try:
        owners = engine.owners()
        assert [o.partition for o in owners] == list(range(PARTITIONS))
        assert all(o.state == "owned" and o.epoch >= 1 and o.node for o in owners)
        assert {o.host for o in owners} == _names(engine)
    finally:
        engine.stop()


def test_a_paused_host_that_wakes_after_its_partitions_moved_is_fenced(
    platform: Platform,
) -> None:
    """SIGSTOP a host past the controller's timeout: its partitions are granted
    to the other host, sagas go on; woken, it finds the newer claims and drops
    what it held, and nothing it might write is applied."""
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
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
        print(f"records of the woken host skipped: {fence.skipped}")
    finally:
        engine.stop()


def test_a_named_engine_outlives_its_driver_and_scales_from_the_command_line(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver that starts again goes on with the running actors; `saga
    scale` adds hosts and a router while sagas run."""
    name = f"t-{uuid.uuid4().hex[:6]}"
    settings = EngineSettings(name=name, hosts=1, routers=1)
    first = Engine(platform.kafka, settings, DEFINITIONS)
    try:
        requests, expected = mixed_requests(600, seed=7)
        ids = platform.client.start_many(requests)
        pids = [
            r.host.pid for r in ray.get([h.ownership.remote() for h in first.hosts])
        ]
        again = Engine(platform.kafka, settings, DEFINITIONS)
        assert [
            r.host.pid for r in ray.get([h.ownership.remote() for h in again.hosts])
        ] == pids
        assert len(again.routers) == 1
        capsys.readouterr()
        code = main(
            [
                "scale", "--name", name, "--hosts", "3", "--routers", "2", "--json",
                "--bootstrap-servers", ",".join(platform.kafka.bootstrap_servers),
                "--partitions", str(PARTITIONS),
            ]
        )  # fmt: skip
        assert code == 0
        scaled = json.loads(capsys.readouterr().out)
        assert (scaled["hosts"], scaled["routers"]) == (3, 2)
        assert len({o["host"] for o in scaled["owners"]}) == 3
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        assert not driven_twice(platform.kafka)
    finally:
        Engine(platform.kafka, settings, DEFINITIONS, attach=True).stop()
    assert not [n for n in ray.util.list_named_actors() if name in n]


def test_a_named_engines_projection_writer_is_found_again(
    platform: Platform, tmp_path: Path
) -> None:
    name = f"t-{uuid.uuid4().hex[:6]}"
    first = start_projection(platform.kafka, tmp_path, name)
    try:
        again = start_projection(platform.kafka, tmp_path, name)
        assert ray.get(again.pid.remote()) == ray.get(first.pid.remote())
        assert f"saga-projection-{name}" in ray.util.list_named_actors()
    finally:
        ray.get(first.stop.remote())
        ray.kill(first, no_restart=True)
