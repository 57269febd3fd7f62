"""Actors restarted while the broker is down come back when it returns.

Every actor connects to Kafka in its worker thread (or, a host, patiently in
its constructor): Ray does not restart an actor whose constructor raised, so
one that met the broker down would stay dead, and its partitions, commands or
projection with it (issue 12, lost infrastructure).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.app.client import SagaClient
from actors.app.run import (
    Follower,
    audit_money,
    drain,
    platform_groups,
    seed_participants,
    workload,
)
from actors.engine.settings import EngineSettings
from actors.errors import EngineStartError
from actors.runtime.engine import Engine
from actors.runtime.participants import participants_ready, start_participants
from actors.runtime.projection import start_projection
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.types import TP
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS
from tests.conftest import private_broker, process_state, settings_for

SEED = 1207
PARTITIONS = 2
SAGAS = 60
#: The clients' connect timeout: an actor that connected in its constructor
#: failed for good this long after the broker stopped answering.
CONNECT_MS = 2_000


def pid(actor: Any, timeout_s: float = 60.0) -> int:
    """The actor's process id, once it answers (a restarting one does not)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(ray.get(actor.pid.remote(), timeout=timeout_s))
        except ray.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline, "the actor did not come back"
            time.sleep(0.2)


@pytest.mark.broker
@pytest.mark.usefixtures("ray_local")
def test_actors_killed_while_the_broker_is_down_come_back_when_it_returns(
    tmp_path: Path,
) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    load = workload(SAGAS, SEED, f"lost{SEED}")
    ids = [saga_id for _, _, saga_id in load.requests]
    seed_participants(tmp_path, load)
    with private_broker(PARTITIONS, connect_timeout_ms=CONNECT_MS) as (broker, kafka):
        engine = Engine(kafka, EngineSettings(hosts=2, routers=1))
        participants = start_participants(kafka, tmp_path)
        projection = start_projection(kafka, tmp_path)
        starts = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
        follower = Follower(kafka, starts, set(ids))
        try:
            engine.wait_ready()
            participants_ready(participants)
            half = SAGAS // 2
            with SagaClient(kafka) as client:
                client.start_many(load.requests[:half])

            # The fault: the broker stops answering, then one actor of each
            # kind is killed, so Ray restarts each while Kafka is away.
            broker.pause()
            assert process_state(broker.pid) == "T"  # the broker really stopped
            service = rng.choice(sorted(participants))
            victims = {
                "host": rng.choice(engine.hosts),
                "router": engine.routers[0],
                f"{service} service": participants[service],
                "projection": projection,
            }
            before = {name: pid(actor) for name, actor in victims.items()}
            for name, number in before.items():
                os.kill(number, signal.SIGKILL)
                print(f"killed the {name} (pid {number}) with the broker paused")
            # Those that connect in their thread answer at once, from a new
            # process, while the broker is still down.
            for name in ("router", f"{service} service", "projection"):
                assert pid(victims[name]) != before[name], name
            # Past three connect timeouts: a constructor that connected would
            # have failed for good by now.
            time.sleep(3 * CONNECT_MS / 1000)
            assert process_state(broker.pid) == "T"
            broker.resume()

            assert pid(victims["host"]) != before["host"]
            engine.wait_ready()
            participants_ready(participants)
            with SagaClient(kafka) as client:
                client.start_many(load.requests[half:])
            deadline = time.monotonic() + 120
            while follower.count() < SAGAS:
                assert time.monotonic() < deadline, (
                    f"{follower.count()} of {SAGAS} sagas ended"
                )
                time.sleep(0.25)
            assert drain(kafka, platform_groups(kafka), 60, print) == 0
            outcomes = follower.outcomes()
            # The projection caught up with the log and the DLQ as well.
            with TopicAdmin(kafka) as admin:
                ends = {
                    (t.name, p): end
                    for t in admin.describe([SAGA_EVENTS, SAGA_DLQ])
                    for p, end in enumerate(t.end_offsets)
                }
            deadline = time.monotonic() + 60
            while any(
                ray.get(projection.position.remote(t, p)) < end
                for (t, p), end in ends.items()
            ):
                assert time.monotonic() < deadline, "the projection did not catch up"
                time.sleep(0.25)
        finally:
            follower.close()
            ray.get(projection.stop.remote(), timeout=60)
            ray.kill(projection, no_restart=True)
            engine.stop()
            ray.get([p.stop.remote() for p in participants.values()], timeout=60)
            for actor in participants.values():
                ray.kill(actor, no_restart=True)
    # The services' files, once they closed them: money is conserved.
    audit = audit_money(tmp_path, outcomes, set(ids), load)
    assert not any(audit.values()), audit


@pytest.mark.broker
@pytest.mark.usefixtures("ray_local")
def test_engine_start_up_gives_up_on_a_broker_that_is_down_saying_so() -> None:
    with private_broker(PARTITIONS, connect_timeout_ms=CONNECT_MS) as (broker, kafka):
        broker.pause()
        try:
            assert process_state(broker.pid) == "T"  # the broker really stopped
            started = time.monotonic()
            with pytest.raises(EngineStartError, match="start_timeout_s") as caught:
                Engine(kafka, EngineSettings(hosts=1, routers=1, start_timeout_s=4))
            assert time.monotonic() - started < 30
            assert broker.bootstrap in str(caught.value)
        finally:
            broker.resume()


@pytest.mark.usefixtures("ray_local")
def test_engine_start_up_says_why_a_host_could_not_start() -> None:
    """A host's constructor that meets what waiting cannot fix (here, topics
    never created) is not restarted by Ray: the engine says why, at once."""
    with EmbeddedBroker() as broker:
        kafka = settings_for(broker.bootstrap)
        started = time.monotonic()
        with pytest.raises(EngineStartError, match="could not start") as caught:
            Engine(kafka, EngineSettings(hosts=1, routers=1))
        assert time.monotonic() - started < 60  # not the 120 s start-up bound
        assert "topics do not exist" in str(caught.value)
        assert "saga topics create" in str(caught.value)
