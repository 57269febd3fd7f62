"""Starting the platform, one way for ``saga serve`` and ``saga run``.

:func:`kafka_for` gives the configured Kafka, or an embedded broker for as long
as it is needed, with the platform's topics in place. :func:`running_platform`
puts the engine, the projection writer and (optionally) the participant
services on Ray, serves the metrics endpoint if asked, and stops everything in
order on leaving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.app.config import SagaConfig
from actors.app.groups import consumer_groups
from actors.app.hops import HopWriter
from actors.app.metrics import PlatformCollector, serve_metrics
from actors.runtime.engine import Engine
from actors.runtime.participants import participants_ready, start_participants
from actors.runtime.passwords import check_actors_can_read
from actors.runtime.projection import start_projection
from actors.runtime.ray import platform_ray
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.settings import KafkaSettings
from events.wire.latency import HistogramCounts
from events.wire.topics import ALL_TOPICS

log = logging.getLogger(__name__)

#: How long an actor may take to tell its hops before that round goes without.
_ASK_TIMEOUT_S = 5.0


@contextmanager
def kafka_for(
    config: SagaConfig,
    announce: Callable[[EmbeddedBroker], None],
    *,
    create_topics: bool,
) -> Iterator[KafkaSettings]:
    """The configured Kafka or, with none, an embedded (memory-only) broker,
    which goes to ``announce`` once its topics exist. The platform's
    topics are created on the embedded broker; on a configured cluster they
    are created if missing with ``create_topics``, else only checked."""
    kafka = config.kafka
    if kafka.bootstrap_servers:
        with TopicAdmin(kafka) as admin:
            if create_topics:
                admin.ensure_topics(ALL_TOPICS)
            else:
                admin.check_topics(ALL_TOPICS)
        yield kafka
        return
    with EmbeddedBroker(long_poll=kafka.embedded_long_poll) as broker:
        kafka = kafka.with_bootstrap(broker.bootstrap)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS)
        announce(broker)
        yield kafka


@dataclass(frozen=True)
class Platform:
    """The platform's actors on Ray (handles), and the Kafka they use."""

    kafka: KafkaSettings
    engine: Engine
    #: The projection writer's actor.
    projection: Any
    #: Each participant service's actor by name; none when they live elsewhere.
    participants: dict[str, Any] = field(default_factory=dict)

    def wait_ready(self, say: Callable[[str], None]) -> None:
        """Until the routers and the services hold their partitions: what a
        saga started before then would wait for."""
        say("waiting for the consumer groups to form")
        self.engine.wait_ready()
        if self.participants:
            participants_ready(self.participants)

    def stop(self) -> None:
        """The projection writer first (it closes its DuckDB file for readers),
        then the engine (routers leave their group, hosts flush), then the
        services; each removed for good, not restarted by Ray."""
        try:
            ray.get(self.projection.stop.remote(), timeout=60)
        except RayError as exc:
            log.warning("the projection did not stop cleanly: %s", exc)
        ray.kill(self.projection, no_restart=True)
        self.engine.stop()
        try:
            ray.get([p.stop.remote() for p in self.participants.values()], timeout=60)
        except RayError as exc:
            log.warning("a participant service did not stop cleanly: %s", exc)
        for actor in self.participants.values():
            ray.kill(actor, no_restart=True)


@contextmanager
def running_platform(
    config: SagaConfig,
    kafka: KafkaSettings,
    data_dir: Path,
    *,
    services: bool,
    say: Callable[[str], None],
    faults: float = 0.0,
    metrics_port: int | None = None,
    metrics_addr: str = "127.0.0.1",
) -> Iterator[Platform]:
    """Ray (connected or started), the engine, the participant services when
    ``services`` (their DuckDB files in ``data_dir``, failing ``faults`` of
    their batches once), the projection writer on ``data_dir``, and the
    metrics endpoint on ``metrics_addr``:``metrics_port``; all stopped on
    leaving. Ray, when it is started here, is shut down after them, its own
    output kept in ``data_dir``/ray.log and the actors' in Ray's session logs
    (both named through ``say``)."""
    if config.ray.address is None:  # a local Ray: its actors get our environment
        check_actors_can_read(kafka)
    ray_log = data_dir / "ray.log"
    if not ray.is_initialized():
        say("starting Ray" if config.ray.address is None else "connecting to Ray")
    with platform_ray(config.ray, ray_log) as actor_logs:
        if actor_logs is not None:
            say(f"Ray's own log: {ray_log}; the actors' logs: {actor_logs}")
        engine = Engine(kafka, config.engine)
        participants = (
            start_participants(kafka, data_dir, faults=faults) if services else {}
        )
        projection = start_projection(kafka, data_dir, config.engine.name)
        platform = Platform(kafka, engine, projection, participants)
        hops = HopWriter(
            lambda: _actor_hops(engine, participants), data_dir / "projections"
        )
        hops.start()
        try:
            if metrics_port is not None:
                serve_metrics(
                    metrics_port,
                    PlatformCollector(
                        kafka,
                        engine.hosts,
                        engine.routers,
                        participants,
                        platform.projection,
                        consumer_groups(config.kafka.consumer.group_id),
                        engine.controller,
                    ),
                    addr=metrics_addr,
                )
                say(f"metrics at http://localhost:{metrics_port}/metrics")
            yield platform
        finally:
            hops.stop()
            platform.stop()


def _actor_hops(
    engine: Engine, participants: Mapping[str, Any]
) -> list[Mapping[str, HistogramCounts]]:
    """The hop histograms of every host, router and service that answers
    (one Ray call each, in parallel): for :class:`HopWriter`."""
    calls = [
        *(h.metrics.remote() for h in engine.hosts),
        *(r.stats.remote() for r in engine.routers),
        *(s.stats.remote() for s in participants.values()),
    ]
    hops = []
    for ref in calls:
        try:
            hops.append(ray.get(ref, timeout=_ASK_TIMEOUT_S).hops)
        except (RayError, GetTimeoutError) as exc:
            log.info("an actor did not answer for its hops: %s", exc)
    return hops
