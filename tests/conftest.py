"""Shared fixtures: one real embedded broker per session, settings, topics, and
one finished run with a fault for the tests that analyse a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import pytest

from actors.core import Claim, LogCodec, LogRecord
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.procstat import STATE, stat_fields
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import (
    ConsumerSettings,
    KafkaSettings,
    ProducerSettings,
)
from events.transport.types import Ack, Outgoing
from events.wire.topics import SAGA_EVENTS


@pytest.fixture(autouse=True)
def data_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The default data directory (``$XDG_DATA_HOME/saga``) of every command a
    test runs, in its own temporary folder: never the user's."""
    home = tmp_path_factory.mktemp("data-home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


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


def platform_settings(
    bootstrap: str,
    partitions: int,
    producer: Mapping[str, int] | None = None,
    **fields: object,
) -> KafkaSettings:
    """:func:`settings_for` with ``partitions`` to each platform topic;
    ``producer`` overrides producer settings, ``fields`` top-level ones."""
    settings = settings_for(bootstrap, **(producer or {}))
    return msgspec.structs.replace(
        settings,
        topics=msgspec.structs.replace(settings.topics, partitions=partitions),
        **fields,
    )


@contextmanager
def private_broker(
    partitions: int = 6,
    *,
    producer: Mapping[str, int] | None = None,
    **fields: object,
) -> Iterator[tuple[EmbeddedBroker, KafkaSettings]]:
    """A broker of the test's own with every platform topic, and its settings:
    for tests that need empty logs and groups, or pause or restart the broker.
    ``producer`` overrides producer settings, ``fields`` top-level ones."""
    from events.wire.topics import ALL_TOPICS

    with EmbeddedBroker() as broker:
        settings = platform_settings(broker.bootstrap, partitions, producer, **fields)
        with TopicAdmin(settings) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=partitions)
        yield broker, settings


@contextmanager
def private_kafka(partitions: int = 6, **fields: object) -> Iterator[KafkaSettings]:
    """:func:`private_broker`'s settings alone."""
    with private_broker(partitions, **fields) as (_, settings):
        yield settings


def append_to_log(
    kafka: KafkaSettings, partition: int, entries: Sequence[LogRecord | Claim]
) -> list[Ack]:
    """Append ``entries`` to ``saga.events`` partition ``partition`` as hosts
    do: records keyed by their sagaId, claims by ``claim/<partition>``; all
    acknowledged, in order."""
    codec = LogCodec()
    with KafkaMessagePublisher(kafka) as publisher:
        return publisher.send_all(
            Outgoing(
                SAGA_EVENTS,
                f"claim/{partition}" if isinstance(e, Claim) else e.saga_id,
                codec.encode(e),
                partition,
            )
            for e in entries
        )


def restart_empty(broker: EmbeddedBroker) -> None:
    """A broker that lost its data: stopped for good (proved by its exit
    status) and a fresh one started on the same port, with no topics."""
    process = broker._process
    assert process is not None
    broker.stop()
    assert process.poll() is not None  # the broker really ended
    broker.start()


def process_state(pid: int, settle_s: float = 2.0) -> str:
    """The /proc state letter of ``pid`` (T: stopped), waiting up to
    ``settle_s`` for a signal just sent to take effect."""
    deadline = time.monotonic() + settle_s
    while True:
        state = stat_fields(pid)[STATE]
        if state == "T" or time.monotonic() >= deadline:
            return state
        time.sleep(0.02)


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    return settings_for(broker.bootstrap)


#: Consumer settings for a group that hands a killed member's partitions on
#: within seconds: a test would otherwise wait out Kafka's 10 s session.
QUICK_GROUP: Final = ConsumerSettings(
    session_timeout_ms=6_000, heartbeat_interval_ms=2_000
)


@pytest.fixture
def service_kafka() -> Iterator[KafkaSettings]:
    """Settings for a command service on a broker of the test's own: every
    platform topic on two partitions, and a :data:`QUICK_GROUP` consumer."""
    with private_kafka(2, consumer=QUICK_GROUP) as settings:
        yield settings


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


class FinishedRun(NamedTuple):
    """A finished ``saga run`` in its own default data dir."""

    #: Its ``$XDG_DATA_HOME``: the run is ``home/saga/run<id>``.
    home: Path
    #: Its ``--json`` summary.
    summary: dict[str, Any]

    @property
    def directory(self) -> Path:
        return Path(self.summary["data_dir"])


@pytest.fixture(scope="session")
def frozen_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A finished ``saga run`` of 600 deposits (chaos seed 1) whose account
    service was frozen (SIGSTOP) past the deposit's retries, with poison
    records on the topics it reads (dead letters), in the default data dir of
    its own ``$XDG_DATA_HOME``. Made once, read by the tests that analyse a
    run: the backtest's, ``saga_state_at``'s and the notebook's."""
    home = tmp_path_factory.mktemp("frozen-run")
    result = subprocess.run(
        [sys.executable, "-m", "actors.app.cli", "run", "--sagas", "600",
         "--seed", "1", "--chaos", "--chaos-faults", "service-freeze,poison",
         "--json"],
        env={**os.environ, "XDG_DATA_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # The faults fired: the service was seen stopped, then running again.
    assert "chaos: fired: account" in result.stderr, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["compensated"] > 0 and summary["dlq"] > 0, summary
    return FinishedRun(home, summary)
