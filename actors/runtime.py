"""The engine on Ray: saga hosts and routers started, watched and stopped.

Hosts are Ray actors that Ray restarts when their process dies
(``max_restarts=-1``); a restarted host restores its partitions from the log.
Routers restart the same way and rejoin the consumer group. Actors ask for no
CPU of their own (``num_cpus=0``): they are mostly waiting on Kafka, and a
2-core machine must fit several.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import ray

from actors.config import EngineSettings, RaySettings
from actors.core import DEFINITIONS, SagaDefinition, SagaState
from actors.engine.host import HostStats, SagaHost, owned_partitions
from actors.engine.router import (
    BROKER_ERRORS,
    RouterActor,
    RouterStats,
    listened_topics,
)
from actors.engine.workers import poll_until, start_vital
from actors.errors import SagaError
from actors.participants import PARTICIPANTS, serve
from events.listener import Delivery, KafkaEventListener
from events.partitions import home_partition
from events.service import RetrySettings, ServiceStats
from events.settings import KafkaSettings
from events.topics import SAGA_DLQ, SAGA_EVENTS
from projections.store import open_store
from projections.writer import (
    Consumed,
    ProjectionWriter,
    StepLatency,
    step_latencies,
)

log = logging.getLogger(__name__)


def ensure_ray(settings: RaySettings, *, quiet: bool = False) -> None:
    """Connect to the configured Ray cluster, or start a small local one.

    ``quiet`` keeps the actors' logs (and Ray's notices of the processes that
    chaos kills) off this process's stdout, for output that must be only JSON.
    """
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": not quiet,
    }
    if settings.address:
        ray.init(address=settings.address, **options)
    else:
        ray.init(num_cpus=settings.num_cpus, **options)


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
        owners = {p: p % count for p in range(self.partitions)}
        # Wait for every host to restore before any router hands it work.
        ray.get([host.pid.remote() for host in self.hosts])
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
        return self.hosts[home_partition(saga_id, self.partitions) % len(self.hosts)]

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


class ParticipantActor:
    """A participant service in a Ray actor: its command service polls in a
    thread whose death ends the process (see :mod:`actors.engine.workers`); Ray
    restarts the actor, and the restarted one reopens the same DuckDB file and
    rejoins the same consumer group."""

    def __init__(
        self,
        kafka: KafkaSettings,
        service: str,
        path: str,
        retry: RetrySettings | None = None,
        faults: float = 0.0,
    ) -> None:
        self._participant = PARTICIPANTS[service](path, faults=faults)
        self._service = serve(kafka, self._participant, retry=retry)
        self._stopping = threading.Event()
        self._thread = start_vital(f"{service}-service", self._run)

    def _run(self) -> None:
        poll_until(
            self._stopping,
            self._service.poll_once,
            BROKER_ERRORS,
            f"{self._service.name} poll",
        )

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> ServiceStats:
        return self._service.stats()

    def stop(self) -> None:
        """Leave the group and close the DuckDB file (so others may open it)."""
        self._stopping.set()
        self._service.stop()
        self._thread.join(timeout=30)
        self._service.close()
        self._participant.close()


def start_participants(
    kafka: KafkaSettings,
    data_dir: Path,
    *,
    retry: RetrySettings | None = None,
    faults: float = 0.0,
) -> dict[str, Any]:
    """One participant actor per service, each with ``<data_dir>/<service>.duckdb``."""
    actor: Any = ray.remote(ParticipantActor).options(
        max_restarts=-1, max_task_retries=0, num_cpus=0
    )
    handles = {
        name: actor.remote(kafka, name, str(data_dir / f"{name}.duckdb"), retry, faults)
        for name in PARTICIPANTS
    }
    ray.get([h.pid.remote() for h in handles.values()])
    return handles


def participants_ready(handles: dict[str, Any], timeout_s: float = 60.0) -> None:
    """Until every participant service holds partitions of its group."""
    wait_until(
        lambda: all(
            s.assigned for s in ray.get([h.stats.remote() for h in handles.values()])
        ),
        timeout_s,
        "participant services to join their consumer groups",
    )


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SagaError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


class ProjectionActor:
    """The projection writer in a Ray actor: a member of its own consumer group
    over ``saga.events`` and ``saga.dlq``, writing ``<path>`` in batches; an
    offset is committed to Kafka only after its batch is in DuckDB."""

    def __init__(
        self,
        kafka: KafkaSettings,
        path: str,
        publish_dir: str,
        publish_every_s: float = 2.0,
    ) -> None:
        self._publish_dir = Path(publish_dir)
        self._publish_every = publish_every_s
        self._published = 0.0
        self._dirty = True
        self._db = open_store(path)
        self._writer = ProjectionWriter(self._db)
        self._counts = {"events": 0, "dead_letters": 0, "skipped": 0, "unreadable": 0}
        self._listener = KafkaEventListener(
            kafka,
            [SAGA_EVENTS, SAGA_DLQ],
            self._handle,
            group_id="saga-projection",
            decode=False,
        )
        self._stopping = threading.Event()
        self._thread = start_vital("projection", self._run)

    def _handle(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        report = self._writer.apply(
            [Consumed(d.topic, d.partition, d.offset, d.value) for d in deliveries]
        )
        self._counts["events"] += report.events
        self._counts["dead_letters"] += report.dead_letters
        self._counts["skipped"] += report.skipped
        self._counts["unreadable"] += report.unreadable
        self._dirty = self._dirty or bool(report.events or report.dead_letters)
        return deliveries

    def _publish(self) -> None:
        self._writer.publish(self._publish_dir)
        self._published = time.monotonic()
        self._dirty = False

    def _run(self) -> None:
        # A DuckDB I/O error (a full disk) may pass; the batch is redelivered.
        transient = (*BROKER_ERRORS, duckdb.IOException)
        poll_until(self._stopping, self._step, transient, "projection batch")

    def _step(self) -> None:
        self._listener.poll_once()
        due = time.monotonic() - self._published >= self._publish_every
        if self._dirty and due:
            self._publish()

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def newest_at(self) -> int:
        """The newest decision time (epoch ms) in the tables."""
        return self._writer.newest_at

    def published_age_s(self) -> float:
        """How long readers' snapshot has trailed the writer (0 when current)."""
        return time.monotonic() - self._published if self._dirty else 0.0

    def step_latencies(self) -> list[StepLatency]:
        """Read through the owner: no other process may open its file."""
        return step_latencies(self._db.cursor())

    def position(self, topic: str, partition: int) -> int:
        """The next offset of ``topic``/``partition`` the projection will read."""
        return self._writer.next_offset(topic, partition)

    def stop(self) -> None:
        """Leave the group and close the DuckDB file (so readers may open it)."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._listener.close()
        self._publish()
        self._db.close()


def start_projection(kafka: KafkaSettings, data_dir: Path) -> Any:
    """The projection writer on ``<data_dir>/projections.duckdb``, publishing
    for readers into ``<data_dir>/projections/``."""
    actor: Any = ray.remote(ProjectionActor).options(
        max_restarts=-1, max_task_retries=0, num_cpus=0
    )
    handle = actor.remote(
        kafka, str(data_dir / "projections.duckdb"), str(data_dir / "projections")
    )
    ray.get(handle.pid.remote())
    return handle
