"""SagaClient on a real broker: starts the broker did not take are reported."""

from __future__ import annotations

import msgspec
import pytest

from actors.app.client import SagaClient
from actors.errors import StartError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.reader import read_to_end
from events.transport.types import TP
from events.wire.topics import ALL_TOPICS, SAGA_REQUESTS
from tests.conftest import settings_for

pytestmark = pytest.mark.broker

INPUT = {"userId": "u", "accountId": "a", "amount": 5, "currency": "USD"}


def test_starts_a_paused_broker_never_acknowledged_are_named() -> None:
    with EmbeddedBroker() as broker:
        kafka = settings_for(
            broker.bootstrap, delivery_timeout_ms=2_000, request_timeout_ms=1_000
        )
        kafka = msgspec.structs.replace(
            kafka, topics=msgspec.structs.replace(kafka.topics, partitions=2)
        )
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=2)
        with SagaClient(kafka) as client:
            assert client.start("deposit", INPUT, "s-0") == "s-0"
            broker.pause()
            try:
                with pytest.raises(StartError) as failure:
                    client.start_many([("deposit", INPUT, f"s-{i}") for i in (1, 2)])
            finally:
                broker.resume()
            assert failure.value.started == []
            assert sorted(failure.value.failed) == ["s-1", "s-2"]
            assert "send those again" in str(failure.value)
            # Sent again, they go out (a start that landed after all is a
            # duplicate the host recognises).
            assert client.start_many([("deposit", INPUT, "s-1")]) == ["s-1"]
        starts = {TP(SAGA_REQUESTS, p): 0 for p in range(2)}
        keys = {r.key for r in read_to_end(kafka, starts)}
        assert {b"s-0", b"s-1"} <= keys
