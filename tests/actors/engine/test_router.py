"""A router (re)joining a broker whose topics are not the ones its engine
started on refuses to consume, and says why, rather than start over on a log
that lost what its group committed (row 7 of the fault matrix, for routers;
hosts: ``test_watch.py``). A router knowing the topics as they are consumes."""

from __future__ import annotations

import time
import uuid

import pytest
import ray

from actors.engine.controller import Controller, controller_name
from actors.engine.router import RouterActor
from events.wire.topics import SAGA_REQUESTS
from tests.actors.engine.test_host import PARTITIONS
from tests.actors.engine.test_watch import (
    identity_of,
    restart_empty_provisioned,
    restartable,
)

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]


@pytest.mark.parametrize("knows", ["the lost topics", "the topics now"])
def test_a_router_on_topics_created_anew_refuses_to_consume(knows: str) -> None:
    engine = uuid.uuid4().hex[:8]
    controller = (
        ray.remote(Controller)
        .options(name=controller_name(engine))
        .remote(engine, PARTITIONS)
    )
    with restartable() as (broker, kafka):
        before = identity_of(kafka)
        after = restart_empty_provisioned(broker, kafka)
        identity = before if knows == "the lost topics" else after
        router = RouterActor(
            kafka,
            controller_name(engine),
            PARTITIONS,
            [SAGA_REQUESTS],
            group_id=f"routers-{engine}",
            identity=identity,
        )
        try:
            deadline = time.monotonic() + 30
            while not (router.stats().fatal or router.stats().assigned):
                assert time.monotonic() < deadline, "neither joined nor stopped"
                time.sleep(0.1)
            stats = router.stats()
        finally:
            router.stop()
            ray.kill(controller)
    if knows == "the lost topics":
        assert "(deleted and created again)" in stats.fatal
        assert (stats.assigned, stats.batches) == ([], 0)
    else:
        assert stats.fatal == ""
        assert {topic for topic, _ in stats.assigned} == {SAGA_REQUESTS}
