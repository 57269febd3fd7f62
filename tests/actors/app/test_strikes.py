"""An armed kill that strikes before the arming call's answer gets back (a
router armed for one acknowledgement can meet it at once) is still a fault
struck and proved, not the end of `saga run` (it once ended a CI chaos run
with an ActorUnavailableError)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray

from actors.app.chaos import Fault
from actors.app.run.strikes import Chaos
from actors.app.run.workload import Workload
from actors.engine.workers import die_now

pytestmark = pytest.mark.usefixtures("ray_local")


class Router:
    """Dies of its arming, as a router does whose first acknowledgement comes
    while the arming call is still answering."""

    def pid(self) -> int:
        return os.getpid()

    def die_after_acks(self, acks: int, mark: str = "") -> None:
        die_now(mark, f"after {acks} host acks, before committing")


def test_an_actor_that_dies_of_its_arming_is_a_fault_proved(tmp_path: Path) -> None:
    router: Any = ray.remote(Router).options(max_restarts=1, num_cpus=0).remote()
    pid = ray.get(router.pid.remote())
    platform = SimpleNamespace(
        kafka=None,
        engine=SimpleNamespace(hosts=[], routers=[router]),
        participants={},
        projection=None,
    )
    fault = Fault(0.1, "router-kill", "router 0", count=1)
    chaos = Chaos(
        [fault],
        platform,
        [],
        Workload({}, {}, {}, []),
        {},
        tmp_path,
        lambda _: None,  # type: ignore[arg-type]
    )
    chaos.tick(0.5)
    [proof] = chaos.proofs()
    assert proof.fired, proof
    assert f"pid {pid} died (after 1 host acks, before committing)" in proof.note
    ray.kill(router, no_restart=True)
