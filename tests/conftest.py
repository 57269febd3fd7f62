"""Shared fixtures: one real embedded broker per session, settings, topics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec
import pytest

from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.settings import (
    ConsumerSettings,
    KafkaSettings,
    ProducerSettings,
)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The session's broker. Tests that pause or kill a broker start their own."""
    with EmbeddedBroker() as running:
        yield running


def settings_for(bootstrap: str, **producer: int) -> KafkaSettings:
    """Settings with short timeouts, so a failure shows in seconds, not minutes."""
    return KafkaSettings(
        bootstrap_servers=(bootstrap,),
        connect_timeout_ms=5_000,
        # A lost log is declared within seconds, not Kafka's 30 s replica lag.
        consumer=ConsumerSettings(loss_grace_ms=2_000),
        producer=msgspec.structs.replace(
            ProducerSettings(
                request_timeout_ms=3_000, delivery_timeout_ms=6_000, max_block_ms=5_000
            ),
            **producer,
        ),
    )


@contextmanager
def private_kafka(partitions: int = 6, **fields: object) -> Iterator[KafkaSettings]:
    """A broker of the test's own with every platform topic, for tests that
    need empty logs and groups; ``fields`` override top-level settings."""
    from events.wire.topics import ALL_TOPICS

    with EmbeddedBroker() as broker:
        settings = settings_for(broker.bootstrap)
        settings = msgspec.structs.replace(
            settings,
            topics=msgspec.structs.replace(settings.topics, partitions=partitions),
            **fields,
        )
        with TopicAdmin(settings) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=partitions)
        yield settings


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    return settings_for(broker.bootstrap)


@pytest.fixture
def new_topic(kafka: KafkaSettings) -> Callable[..., str]:
    """Creates a uniquely named service topic (``t<hex>.events.test``)."""
    admin = TopicAdmin(kafka)

    def create(partitions: int = 1) -> str:
        name = f"t{uuid.uuid4().hex[:12]}.events.test"
        admin.ensure_topics([name], partitions=partitions)
        return name

    yield create
    admin.close()


@pytest.fixture
def group_id() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the session: starting it costs seconds."""
    import ray

    from actors.runtime.ray import ensure_ray
    from actors.runtime.settings import RaySettings

    ensure_ray(RaySettings(num_cpus=2))
    yield
    ray.shutdown()
