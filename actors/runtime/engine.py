"""The engine on Ray: saga hosts and routers started, watched and stopped.

Hosts are Ray actors that Ray restarts when their process dies
(``max_restarts=-1``); a restarted host restores its partitions from the log.
Routers restart the same way and rejoin the consumer group. Actors ask for no
CPU of their own (``num_cpus=0``): they are mostly waiting on Kafka, and a
2-core machine must fit several.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

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
from actors.engine.workers import connect_patiently
from actors.errors import EngineStartError
from actors.runtime.passwords import read_passwords
from actors.runtime.ray import wait_until
from events.errors import CertificateRefusedError
from events.transport.admin import TopicAdmin
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from events.transport.types import LogIdentity
from events.wire.topics import ALL_TOPICS

log = logging.getLogger(__name__)


class HostOnRay(SagaHost):
    """A :class:`SagaHost` as Ray starts it: its Kafka passwords, withheld from
    its arguments, read back first (:mod:`actors.runtime.passwords`)."""

    def __init__(self, kafka: KafkaSettings, *args: Any, **kwargs: Any) -> None:
        super().__init__(read_passwords(kafka), *args, **kwargs)


class RouterOnRay(RouterActor):
    """A :class:`RouterActor` as Ray starts it, its passwords read back first."""

    def __init__(self, kafka: KafkaSettings, *args: Any, **kwargs: Any) -> None:
        super().__init__(read_passwords(kafka), *args, **kwargs)


class Engine:
    """The hosts and routers of one orchestrator."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: EngineSettings | None = None,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
        *,
        group_id: str | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings or EngineSettings()
        self.partitions = kafka.topics.partitions
        count = self.settings.hosts
        wait = self.settings.start_timeout_s
        deadline = time.monotonic() + wait
        # What every host and router checks the log against, at each (re)start
        # and reload: a broker that lost it must not be taken for a new one.
        identity = _identity(kafka, deadline, wait)
        names = [f"saga-host-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
        self.hosts: list[Any] = [
            ray.remote(HostOnRay)
            .options(name=names[i], max_restarts=-1, max_task_retries=0, num_cpus=0)
            .remote(
                kafka,
                owned_partitions(i, count, self.partitions),
                self.partitions,
                self.settings.host,
                definitions,
                identity=identity,
            )
            for i in range(count)
        ]
        owners = {p: owner_of(p, count) for p in range(self.partitions)}
        # Wait for every host to restore before any router hands it work.
        try:
            ray.get(
                [host.pid.remote() for host in self.hosts],
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except GetTimeoutError:
            self._kill(self.hosts)
            raise EngineStartError(_waited(kafka, wait, "the saga hosts")) from None
        except RayActorError as exc:
            # A constructor that raised (a missing topic, a password the node
            # lacks): Ray does not restart it, and says why only deep inside.
            self._kill(self.hosts)
            raise EngineStartError(f"a saga host could not start: {exc}") from None
        lost = [s.log_lost for s in self.host_stats() if s.log_lost]
        if lost:
            self._kill(self.hosts)
            raise EngineStartError(f"a saga host cannot start: {lost[0]}")
        router_actor: Any = ray.remote(RouterOnRay).options(
            max_restarts=-1, max_task_retries=0, num_cpus=0
        )
        topics = listened_topics(definitions)
        self.routers: list[Any] = [
            router_actor.remote(
                kafka,
                names,
                owners,
                self.partitions,
                topics,
                group_id=group_id,
                identity=identity,
            )
            for i in range(self.settings.routers)
        ]
        try:
            ray.get([router.pid.remote() for router in self.routers])
        except RayActorError as exc:
            self._kill([*self.routers, *self.hosts])
            raise EngineStartError(f"a router could not start: {exc}") from None

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
        self._kill([*self.routers, *self.hosts])

    @staticmethod
    def _kill(handles: list[Any]) -> None:
        for handle in handles:
            ray.kill(handle, no_restart=True)


def _waited(kafka: KafkaSettings, wait: float, who: str) -> str:
    return (
        f"{who} did not start within {wait:g} s: they wait for Kafka at "
        f"{kafka.servers}; check that it is reachable (the wait is "
        "engine.start_timeout_s)"
    )


def _identity(kafka: KafkaSettings, deadline: float, wait: float) -> LogIdentity:
    """The cluster and topics the engine starts on, waited for until
    ``deadline`` like the hosts' restore."""

    def read() -> LogIdentity:
        with TopicAdmin(kafka) as admin:
            return admin.identity(ALL_TOPICS)

    out_of_time = threading.Event()
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), out_of_time.set)
    timer.start()
    try:
        # A refused certificate is not a broker that is down: waiting would
        # only hide the reason.
        found = connect_patiently(
            out_of_time, read, "engine start", fatal=(CertificateRefusedError,)
        )
    except CertificateRefusedError as exc:
        raise EngineStartError(str(exc)) from exc
    finally:
        timer.cancel()
    if found is None:
        raise EngineStartError(_waited(kafka, wait, "the engine"))
    return found
