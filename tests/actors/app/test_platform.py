"""`saga serve` and `saga run`'s Kafka: the configured cluster's topics checked
or created, or an embedded broker with them, for as long as it is needed."""

from __future__ import annotations

import socket

import pytest

from actors.app.config import SagaConfig
from actors.app.platform import kafka_for
from events.errors import MissingTopicError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.wire.topics import ALL_TOPICS
from tests.conftest import settings_for

pytestmark = pytest.mark.broker


def test_a_configured_cluster_has_its_topics_checked_or_created() -> None:
    announced: list[EmbeddedBroker] = []
    # A broker of its own: the catalog's topic names are global.
    with EmbeddedBroker() as broker:
        config = SagaConfig(kafka=settings_for(broker.bootstrap))
        with (
            pytest.raises(MissingTopicError),
            kafka_for(config, announced.append, create_topics=False),
        ):
            pass
        with kafka_for(config, announced.append, create_topics=True) as kafka:
            assert kafka == config.kafka
            with TopicAdmin(kafka) as admin:
                admin.check_topics(ALL_TOPICS)
    assert announced == []


def test_without_a_cluster_an_embedded_broker_lives_as_long_as_the_block() -> None:
    announced: list[EmbeddedBroker] = []
    with kafka_for(SagaConfig(), announced.append, create_topics=False) as kafka:
        assert [b.bootstrap for b in announced] == list(kafka.bootstrap_servers)
        with TopicAdmin(kafka) as admin:
            admin.check_topics(ALL_TOPICS)
    host, port = announced[0].bootstrap.rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
