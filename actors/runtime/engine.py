"""The engine on Ray: saga hosts and routers started, watched and stopped.

Hosts are Ray actors that Ray restarts when their process dies
(``max_restarts=-1``); a restarted host restores its partitions from the log.
Routers restart the same way and rejoin the consumer group. Actors ask for no
CPU of their own (``num_cpus=0``): they are mostly waiting on Kafka, and a
2-core machine must fit several.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from actors.core import DEFINITIONS, SagaDefinition, SagaState
from actors.engine.books import owned_partitions, owner_of
from actors.engine.host import SagaHost
from actors.engine.router import (
    RouterActor,
    RouterStats,
    listened_topics,
)
from actors.engine.settings import EngineSettings
from actors.engine.stats import HostStats
from actors.errors import EngineStartError
from actors.runtime.ray import wait_until
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings

log = logging.getLogger(__name__)


class Engine:
    """The hosts and routers of one orchestrator."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: EngineSettings | None = None,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
        *,
        group_id: str | None = None,
        router_faults: Mapping[int, int] | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings or EngineSettings()
        self.partitions = kafka.topics.partitions
        count = self.settings.hosts
        names = [f"saga-host-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
        self.hosts: list[Any] = [
            ray.remote(SagaHost)
            .options(name=names[i], max_restarts=-1, max_task_retries=0, num_cpus=0)
            .remote(
                kafka,
                owned_partitions(i, count, self.partitions),
                self.partitions,
                self.settings.host,
                definitions,
            )
            for i in range(count)
        ]
        owners = {p: owner_of(p, count) for p in range(self.partitions)}
        # Wait for every host to restore before any router hands it work.
        wait = self.settings.start_timeout_s
        try:
            ray.get([host.pid.remote() for host in self.hosts], timeout=wait)
        except GetTimeoutError:
            for host in self.hosts:
                ray.kill(host, no_restart=True)
            raise EngineStartError(
                f"the saga hosts did not restore within {wait:g} s: they wait for "
                f"Kafka at {kafka.servers}; check that it is reachable (the wait "
                "is engine.start_timeout_s)"
            ) from None
        router_actor: Any = ray.remote(RouterActor).options(
            max_restarts=-1, max_task_retries=0, num_cpus=0
        )
        faults = router_faults or {}
        topics = listened_topics(definitions)
        self.routers: list[Any] = [
            router_actor.remote(
                kafka,
                names,
                owners,
                self.partitions,
                topics,
                group_id=group_id,
                die_after_acks=faults.get(i),
            )
            for i in range(self.settings.routers)
        ]
        ray.get([router.pid.remote() for router in self.routers])

    def host_of(self, saga_id: str) -> Any:
        home = home_partition(saga_id, self.partitions)
        return self.hosts[owner_of(home, len(self.hosts))]

    def state(self, saga_id: str) -> SagaState | None:
        """The live state of an in-flight saga (``None`` once it ended)."""
        result: SagaState | None = ray.get(self.host_of(saga_id).state.remote(saga_id))
        return result

    def host_stats(self) -> list[HostStats]:
        return list(ray.get([host.stats.remote() for host in self.hosts]))

    def router_stats(self) -> list[RouterStats]:
        return list(ray.get([router.stats.remote() for router in self.routers]))

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every router holds partitions (joining a group takes seconds)."""
        wait_until(
            lambda: all(s.assigned for s in self.router_stats()),
            timeout_s,
            "routers to join the consumer group",
        )

    def stop(self) -> None:
        """Routers leave the group cleanly, then every actor is removed."""
        try:
            ray.get([router.stop.remote() for router in self.routers], timeout=60)
        except ray.exceptions.RayError as exc:
            log.warning("a router did not stop cleanly: %s", exc)
        try:
            # Flushes the commands still queued in each host's producer.
            ray.get([host.close.remote() for host in self.hosts], timeout=30)
        except ray.exceptions.RayError as exc:
            log.warning("a host did not close cleanly: %s", exc)
        for handle in [*self.routers, *self.hosts]:
            ray.kill(handle, no_restart=True)
