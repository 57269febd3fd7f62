"""The engine on Ray: its controller, saga hosts and routers, started,
scaled and stopped.

Hosts are Ray actors that Ray restarts when their process dies
(``max_restarts=-1``); a restarted host owns nothing until the controller
grants its partitions again (:mod:`actors.engine.controller`), and a host that
stays away (its node died) has them granted to others. Routers restart the
same way and rejoin the consumer group. Actors ask for no CPU of their own
(``num_cpus=0``): they are mostly waiting on Kafka, and a 2-core machine must
fit several.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.core import DEFINITIONS, SagaDefinition, SagaState
from actors.engine.controller import (
    Controller,
    PartitionOwner,
    actor_names,
    controller_name,
    host_prefix,
    router_prefix,
)
from actors.engine.host import SagaHost
from actors.engine.router import (
    RouterActor,
    RouterStats,
    listened_topics,
)
from actors.engine.settings import EngineSettings
from actors.engine.stats import HostStats
from actors.engine.workers import connect_patiently
from actors.errors import EngineStartError, SagaError
from actors.runtime.passwords import read_passwords
from actors.runtime.placement import advertised, slot_options
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
    its arguments, read back first (:mod:`actors.runtime.passwords`), and the
    node it runs on named in its reports."""

    def __init__(self, kafka: KafkaSettings, *args: Any, **kwargs: Any) -> None:
        kafka = read_passwords(kafka)
        node = ray.get_runtime_context().get_node_id()
        super().__init__(kafka, *args, node=node, **kwargs)


class RouterOnRay(RouterActor):
    """A :class:`RouterActor` as Ray starts it, its passwords read back first."""

    def __init__(self, kafka: KafkaSettings, *args: Any, **kwargs: Any) -> None:
        super().__init__(read_passwords(kafka), *args, **kwargs)


class Engine:
    """The controller, hosts and routers of one orchestrator."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: EngineSettings | None = None,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
        *,
        group_id: str | None = None,
        attach: bool = False,
    ) -> None:
        """Start an engine, or go on with the named one already running (its
        actors as they are). ``attach``: only go on with a running one."""
        self.kafka = kafka
        self.settings = settings or EngineSettings()
        self.partitions = kafka.topics.partitions
        self.id = self.settings.name or uuid.uuid4().hex[:8]
        self._definitions = definitions
        self._group_id = group_id
        controller = controller_name(self.id)
        running = controller in actor_names(controller)
        if attach and not running:
            raise EngineStartError(
                f"no engine named {self.id!r} runs in this Ray namespace: start "
                f"one with saga serve --set engine.name={self.id}"
            )
        # A named engine's actors outlive the process that started them.
        self._lifetime = {"lifetime": "detached"} if self.settings.name else {}
        self._hosts = _named(host_prefix(self.id))
        self._routers = _named(router_prefix(self.id))
        self._made = 1 + max(
            (_number(n) for n in [*self._hosts, *self._routers]), default=-1
        )
        # Where the cluster says: on slots of the worker nodes, if it has them.
        self._slot = slot_options(advertised())
        wait = self.settings.start_timeout_s
        deadline = time.monotonic() + wait
        # What every host and router checks the log against, at each (re)start
        # and reload: a broker that lost it must not be taken for a new one.
        self._identity = _identity(kafka, deadline, wait)
        self.controller: Any = (
            ray.remote(Controller)
            .options(
                name=controller_name(self.id),
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=8,
                num_cpus=0,
                **self._slot,
                **self._lifetime,
            )
            .remote(
                self.id,
                self.partitions,
                int(time.time() * 1000),
                host_timeout_s=self.settings.host_timeout_s,
            )
        )
        if running:
            return  # its hosts and routers run: go on with them as they are
        try:
            self._add_hosts(self.settings.hosts, deadline)
            self._wait_settled(deadline, wait)
            self._add_routers(self.settings.routers)
        except BaseException:
            self._kill([*self.routers, *self.hosts, self.controller])
            raise

    @property
    def routers(self) -> list[Any]:
        return list(self._routers.values())

    def _add_routers(self, count: int) -> None:
        made = self._start(
            RouterOnRay,
            router_prefix(self.id),
            count,
            lambda _: (
                (
                    self.kafka,
                    controller_name(self.id),
                    self.partitions,
                    listened_topics(self._definitions),
                ),
                {"group_id": self._group_id, "identity": self._identity},
            ),
        )
        self._routers.update(made)
        try:
            ray.get([router.pid.remote() for router in made.values()])
        except RayActorError as exc:
            raise EngineStartError(f"a router could not start: {exc}") from None

    def _start(
        self,
        actor: type,
        prefix: str,
        count: int,
        arguments: Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]],
    ) -> dict[str, Any]:
        """``count`` more actors of the engine, named ``prefix`` and the next
        numbers, restarted by Ray and placed as the cluster says; their
        constructor arguments by name."""
        made: dict[str, Any] = {}
        for _ in range(count):
            name = f"{prefix}{self._made}"
            self._made += 1
            args, kwargs = arguments(name)
            made[name] = (
                ray.remote(actor)
                .options(
                    name=name,
                    max_restarts=-1,
                    max_task_retries=0,
                    num_cpus=0,
                    **self._slot,
                    **self._lifetime,
                )
                .remote(*args, **kwargs)
            )
        return made

    @property
    def hosts(self) -> list[Any]:
        return list(self._hosts.values())

    def _add_hosts(self, count: int, deadline: float) -> None:
        """Start ``count`` more hosts; the controller finds them by name."""
        made = self._start(
            HostOnRay,
            host_prefix(self.id),
            count,
            lambda name: (
                (self.kafka, self.partitions, self.settings.host, self._definitions),
                {"name": name, "engine": self.id, "identity": self._identity},
            ),
        )
        self._hosts.update(made)
        try:
            ray.get(
                [host.pid.remote() for host in made.values()],
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except GetTimeoutError:
            raise EngineStartError(
                _waited(self.kafka, self.settings.start_timeout_s, "the saga hosts")
            ) from None
        except RayActorError as exc:
            # A constructor that raised (a missing topic, a password the node
            # lacks): Ray does not restart it, and says why only deep inside.
            raise EngineStartError(f"a saga host could not start: {exc}") from None
        lost = [s.log_lost for s in self.host_stats() if s.log_lost]
        if lost:
            raise EngineStartError(f"a saga host cannot start: {lost[0]}")

    def _wait_settled(
        self, deadline: float, wait: float, *, balanced: bool = False
    ) -> None:
        """Until every partition has an owner (and, ``balanced``, no move is
        left to make)."""

        def done() -> bool:
            if balanced:
                return bool(ray.get(self.controller.balanced.remote(list(self._hosts))))
            return bool(ray.get(self.controller.settled.remote()))

        while not done():
            if time.monotonic() > deadline:
                raise EngineStartError(
                    _waited(self.kafka, wait, "the saga hosts' partitions")
                )
            time.sleep(0.1)

    def scale(
        self,
        hosts: int | None = None,
        routers: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Run ``hosts`` hosts and ``routers`` routers (``None``: as many as
        now). New hosts take partitions from the others; the newest hosts go
        after their partitions moved away. Sagas in flight carry on: a moving
        partition waits for its new owner's restore, and a router that leaves
        the consumer group hands its topic partitions to the others."""
        for count, what in ((hosts, "host"), (routers, "router")):
            if count is not None and count < 1:
                raise SagaError(f"an engine needs at least one {what}, not {count}")
        wait = timeout_s or self.settings.start_timeout_s
        deadline = time.monotonic() + wait
        if hosts is not None and hosts > len(self._hosts):
            self._add_hosts(hosts - len(self._hosts), deadline)
        elif hosts is not None and hosts < len(self._hosts):
            leaving = list(self._hosts)[hosts:]
            ray.get(self.controller.drain.remote(leaving))
            wait_until(
                lambda: bool(ray.get(self.controller.drained.remote(leaving))),
                max(0.0, deadline - time.monotonic()),
                f"hosts {leaving} to hand their partitions over",
            )
            self._close([self._hosts[name] for name in leaving])
            self._kill([self._hosts.pop(name) for name in leaving])
        self._wait_settled(deadline, wait, balanced=True)
        if routers is not None and routers > len(self._routers):
            self._add_routers(routers - len(self._routers))
        elif routers is not None and routers < len(self._routers):
            leaving = list(self._routers)[routers:]
            self._stop_routers([self._routers[name] for name in leaving])
            self._kill([self._routers.pop(name) for name in leaving])

    def owners(self) -> list[PartitionOwner]:
        """Each partition's owning host, epoch and node (``saga status``)."""
        return list(ray.get(self.controller.owners.remote()))

    def host_of(self, saga_id: str) -> Any:
        home = home_partition(saga_id, self.partitions)
        name = ray.get(self.controller.routes.remote()).owners[home]
        return self._hosts.get(name) or ray.get_actor(name)

    def state(self, saga_id: str) -> SagaState | None:
        """The live state of an in-flight saga (``None`` once it ended)."""
        result: SagaState | None = ray.get(self.host_of(saga_id).state.remote(saga_id))
        return result

    def host_stats(self) -> list[HostStats]:
        return list(ray.get([host.stats.remote() for host in self._hosts.values()]))

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
        """Routers leave the group cleanly, then every actor is removed (a
        named engine's too: stopping is not a driver that went away, and
        what another process added, ``saga scale``, goes with it)."""
        # What another process added (saga scale) is found by name; the
        # handles this engine made are kept: dropping the handle that made a
        # non-detached actor ends it on the spot, before it could stop.
        self._hosts = _named(host_prefix(self.id), self._hosts)
        self._routers = _named(router_prefix(self.id), self._routers)
        self._stop_routers(self.routers)
        try:
            ray.get(self.controller.stop.remote(), timeout=30)
        except ray.exceptions.RayError as exc:
            log.warning("the controller did not stop cleanly: %s", exc)
        self._close(self.hosts)
        self._kill([*self.routers, *self.hosts, self.controller])

    @staticmethod
    def _stop_routers(routers: list[Any]) -> None:
        try:
            ray.get([router.stop.remote() for router in routers], timeout=60)
        except ray.exceptions.RayError as exc:
            log.warning("a router did not stop cleanly: %s", exc)

    @staticmethod
    def _close(hosts: list[Any]) -> None:
        try:
            # Flushes the commands still queued in each host's producer.
            ray.get([host.close.remote() for host in hosts], timeout=30)
        except ray.exceptions.RayError as exc:
            log.warning("a host did not close cleanly: %s", exc)

    @staticmethod
    def _kill(handles: list[Any]) -> None:
        for handle in handles:
            ray.kill(handle, no_restart=True)


def _named(prefix: str, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """The running actors of this namespace whose names start with
    ``prefix``, in the order they were made: the handle in ``known`` where
    there is one, else one found by name."""
    known = known or {}
    names = sorted(actor_names(prefix), key=_number)
    return {name: known.get(name) or ray.get_actor(name) for name in names}


def _number(name: str) -> int:
    """The number an engine's actor name ends with (its making order)."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


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
