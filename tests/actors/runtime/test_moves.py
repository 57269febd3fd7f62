"""A named engine on a local Ray: it outlives its driver and scales from the
command line, its projection writer is found again, and every partition
names its owner. (Partitions moving while sagas run, on a multi-node cluster:
``test_cluster_runs.py``.)
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.app.cli import main
from actors.app.run.stall import explain_stall
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from actors.runtime.projection import start_projection
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.types import TP, Outgoing
from events.wire.topics import SAGA_EVENTS, SAGA_SNAPSHOTS
from tests.actors.engine.test_snapshots import manifest_at, raw
from tests.actors.runtime.moving import driven_twice, host_names
from tests.actors.runtime.test_engine import (
    DEFINITIONS,
    PARTITIONS,
    Platform,
    audit,
    mixed_requests,
    running_platform,
    wait_terminal,
)

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def platform() -> Iterator[Platform]:
    with running_platform() as running:
        yield running


def test_status_of_every_partition_names_its_owner(platform: Platform) -> None:
    engine = platform.engine()
    try:
        owners = engine.owners()
        assert [o.partition for o in owners] == list(range(PARTITIONS))
        assert all(o.state == "owned" and o.epoch >= 1 and o.node for o in owners)
        assert {o.host for o in owners} == host_names(engine)
    finally:
        engine.stop()


def test_a_stalled_run_is_told_where_its_unended_sagas_wait(
    platform: Platform,
) -> None:
    """``saga run``'s account of a stall (:mod:`actors.app.run.stall`), asked
    of a live engine about a saga its owner never saw."""
    engine = platform.engine()
    said: list[str] = []
    try:
        explain_stall(engine, {"never-started"}, 0, said.append)
        hosts = host_names(engine)
    finally:
        engine.stop()
    home = home_partition("never-started", PARTITIONS)
    owner = said[0].removeprefix(f"stalled: partition {home}: 1 saga(s) unended; ")
    assert owner.startswith("owned by saga-host-") and " at epoch " in owner
    assert said[1] == (
        "stalled:   never-started: not in flight on its owner (ended there, or "
        "unknown to it)"
    )
    assert sum(line.startswith("stalled: host ") for line in said) == len(hosts)
    assert any(line.startswith("stalled: router: assigned [") for line in said)


def test_a_host_that_cannot_rebuild_from_the_log_loses_its_partitions(
    platform: Platform,
) -> None:
    """A host whose rebuild fails for a reason waiting will not mend (here,
    a snapshot of one of its partitions whose chunk is nowhere) says so in
    its ownership, and the controller grants its partitions to the other
    host instead of leaving them stalled behind a host that still answers.
    The unreadable partition itself no host can take: it stays unowned."""
    engine = platform.engine()
    try:
        ids = platform.client.start_many(mixed_requests(60, seed=7)[0])
        wait_terminal(platform.client, ids)
        reports = ray.get([h.ownership.remote() for h in engine.hosts])
        sick = next(r for r in reports if len(r.owned) >= 2)
        broken, *healthy = sorted(sick.owned)
        # Its newest snapshot of one partition, unreadable; then a record of
        # its epoch there that it did not append, which its idle check finds.
        with PartitionReader(platform.kafka) as reader:
            [end] = reader.ends([TP(SAGA_SNAPSHOTS, broken)]).values()
            [*_, last] = reader.read({TP(SAGA_EVENTS, broken): 0})
        manifest = manifest_at(1, first=end, previous=-1, partition=broken)
        with KafkaMessagePublisher(platform.kafka) as publisher:
            publisher.send_all(
                [
                    raw(manifest),
                    Outgoing(
                        SAGA_EVENTS, (last.key or b"").decode(), last.value, broken
                    ),
                ]
            )
        deadline = time.monotonic() + 60
        while True:
            owners = {o.partition: o for o in engine.owners()}
            moved = all(
                owners[p].state == "owned" and owners[p].host != sick.host.name
                for p in healthy
            )
            if moved:
                break
            assert time.monotonic() < deadline, f"never moved: {owners}"
            time.sleep(0.2)
        seen = ray.get(engine.controller.owners.remote())
        report = next(
            r
            for r in ray.get([h.ownership.remote() for h in engine.hosts])
            if r.host.name == sick.host.name
        )
        assert "RestoreError" in report.failing and "incomplete" in report.failing
        assert all(o.host != sick.host.name for o in seen if o.state == "owned")
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
