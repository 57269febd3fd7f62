"""Deeply nested input never stalls or kills anything.

10 KB of brackets made msgspec raise ``RecursionError``, which no guard caught:
the router retried the same batch forever, participant threads died silently,
and a start request nested near the limit could be logged in a form the log
codec could not read back, so the host never restored again.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.app.client import SagaClient
from actors.app.run import Follower, seed_participants, workload
from actors.core import DEFINITIONS, start_message
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.router import listened_topics
from actors.engine.settings import EngineSettings, HostSettings
from actors.engine.workers import WORKER_DIED, poll_until
from actors.runtime.engine import Engine
from actors.runtime.participants import participants_ready, start_participants
from events.errors import EventsError, NotJsonError
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing
from events.wire.dead_letters import DeadLetter
from events.wire.messages import MessageCodec
from events.wire.nesting import MAX_DEPTH, nesting_depth
from events.wire.topics import COMMAND_TOPICS, SAGA_EVENTS, SAGA_REQUESTS
from tests.conftest import private_kafka
from tests.reading import letters

DEEP = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
INPUT = {"userId": "u-1", "accountId": "a-1", "amount": 5, "currency": "USD"}
CODEC = MessageCodec()


# ---------------------------------------------------------------------------
# The worker threads of the actors.


def test_a_dying_worker_thread_ends_its_process_loudly() -> None:
    script = textwrap.dedent(
        """
        import logging, time
        from actors.engine.workers import Fatal, start_vital
        logging.basicConfig()
        def loop():
            raise ValueError("a bug in the loop")
        start_vital("consumer", loop, Fatal())
        time.sleep(30)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == WORKER_DIED
    assert "CRITICAL" in result.stderr
    assert "worker thread 'consumer' died" in result.stderr
    assert "ValueError: a bug in the loop" in result.stderr


def test_poll_until_retries_the_broker_but_never_a_bad_record() -> None:
    stopping = threading.Event()
    polls: list[int] = []

    def flaky() -> None:
        polls.append(len(polls))
        if len(polls) == 1:
            raise EventsError("the broker went away")
        stopping.set()

    poll_until(stopping, flaky, (EventsError,), "test poll")
    assert len(polls) == 2

    def poisoned() -> None:
        raise NotJsonError("not JSON", b"{")

    # A decode error is an EventsError too, but retrying a record never ends.
    with pytest.raises(NotJsonError):
        poll_until(threading.Event(), poisoned, (EventsError,), "test poll")

    def buggy() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        poll_until(threading.Event(), buggy, (EventsError,), "test poll")


# ---------------------------------------------------------------------------
# A start request at the wire's nesting limit: logged, and read back.


def nested_start(saga_id: str, depth: int) -> bytes:
    """A start request whose document nests exactly ``depth`` levels."""
    hole = {**INPUT, "x": "hole"}
    message = start_message(saga_id, "deposit", hole, datetime.now(UTC))
    arrays = depth - 3  # below the message, its payload and the input
    raw = CODEC.encode(message).replace(b'"hole"', b"[" * arrays + b"]" * arrays)
    assert nesting_depth(raw) == depth
    return raw


def restoring_host(kafka: KafkaSettings) -> SagaHost:
    return own(SagaHost(kafka, 2, HostSettings(), start_timers=False), range(2))


@pytest.mark.broker
def test_start_inputs_at_and_over_the_wire_limit_never_break_a_restore() -> None:
    with private_kafka(2) as kafka:
        first = restoring_host(kafka)
        at, over, far = "s-at-limit", "s-over-limit", "s-far-over"
        batch = [
            (SAGA_REQUESTS, 0, i, saga_id, nested_start(saga_id, depth))
            for i, (saga_id, depth) in enumerate(
                [(at, MAX_DEPTH), (over, MAX_DEPTH + 1), (far, 995)]
            )
        ]
        report = first.handle(batch)
        assert (report.applied, report.dead_letters) == (1, 2)
        started = first.state(at)
        assert started is not None and started.input["x"]
        first.close()
        # The log alone, then a snapshot: both read back what the wire took.
        second = restoring_host(kafka)
        restored = second.state(at)
        assert restored is not None and restored.input == started.input
        assert second.state(over) is None and second.state(far) is None
        second.snapshot()
        second.close()
        third = restoring_host(kafka)
        assert third.stats().restored_sagas == 1
        from_snapshot = third.state(at)
        assert from_snapshot is not None and from_snapshot.input == started.input
        third.close()
        refused = letters(kafka, 2)
        assert {letter.saga_id for letter in refused} == {over, far}
        assert all("refused before decoding" in d.error for d in refused)


# ---------------------------------------------------------------------------
# The whole platform under poison.

PARTITIONS = 6
SEED = int(os.environ.get("SAGA_TEST_SEED", "20261125"))
SAGAS = 300
REPLY_TOPICS = [
    "user.events.verify",
    "payment.events.process",
    "payment.events.refund",
    "account.events.deposit",
]
POISONED = [
    SAGA_REQUESTS,
    *REPLY_TOPICS,
    "user.commands.verify",
    "payment.commands.process",
    "payment.commands.refund",
    "account.commands.deposit",
]


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def write_poison(
    kafka: KafkaSettings, rng: random.Random
) -> list[tuple[str, int, int]]:
    """The deep record on every poisoned topic, unkeyed (on a random partition)
    and keyed (on its key's home); returns where each one landed."""
    records = []
    for topic in POISONED:
        key = f"poison-{rng.randrange(10**6)}"
        records.append(Outgoing(topic, None, DEEP, rng.randrange(PARTITIONS)))
        records.append(Outgoing(topic, key, DEEP, home_partition(key, PARTITIONS)))
    with KafkaMessagePublisher(kafka) as publisher:
        landed = publisher.send_all(records)
    return [(m.topic, m.partition, m.offset) for m in landed]


def pids(actors: list[Any]) -> list[int]:
    return list(ray.get([actor.pid.remote() for actor in actors]))


@pytest.mark.broker
@pytest.mark.usefixtures("ray_local")
def test_poison_on_every_topic_is_dead_lettered_and_every_saga_ends(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    assert sorted(POISONED) == sorted([*listened_topics(DEFINITIONS), *COMMAND_TOPICS])
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    load = workload(SAGAS, SEED, f"poison{SEED}")
    ids = [saga_id for _, _, saga_id in load.requests]
    seed_participants(tmp_path, load)
    engine = Engine(kafka, EngineSettings(hosts=2, routers=1))
    participants = start_participants(kafka, tmp_path)
    actors = [*engine.hosts, *engine.routers, *participants.values()]
    log = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    follower = Follower(kafka, log, set(ids))
    try:
        engine.wait_ready()
        participants_ready(participants)
        before = pids(actors)
        cut = rng.randrange(SAGAS // 4, 3 * SAGAS // 4)
        with SagaClient(kafka) as client:
            client.start_many(load.requests[:cut])
            # Mid-flight: commands and replies are on every topic by now.
            wait_for_ends(follower, cut // 3)
            poison = write_poison(kafka, rng)
            client.start_many(load.requests[cut:])
        wait_for_ends(follower, len(ids))
        letters = wait_for_letters(kafka, poison)
        for position in poison:
            assert "refused before decoding" in letters[position].error, position
        # No worker thread died: every actor is still its first process.
        assert pids(actors) == before
        # The run's follower passes over what is not a log record.
        with KafkaMessagePublisher(kafka) as publisher:
            publisher.publish_raw(SAGA_EVENTS, None, DEEP, partition=0)
            publisher.publish_raw(SAGA_EVENTS, "s-x", b"\xff{", partition=1)
            publisher.flush()
        deadline = time.monotonic() + 30
        while follower.unreadable < 2:
            assert time.monotonic() < deadline, "the follower did not go on"
            time.sleep(0.1)
    finally:
        follower.close()
        engine.stop()
        ray.get([p.stop.remote() for p in participants.values()], timeout=60)
        for actor in participants.values():
            ray.kill(actor, no_restart=True)


def wait_for_ends(follower: Follower, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while follower.count() < count:
        assert time.monotonic() < deadline, (
            f"only {follower.count()} sagas ended, waiting for {count}"
        )
        time.sleep(0.25)


def wait_for_letters(
    kafka: KafkaSettings, poison: list[tuple[str, int, int]]
) -> dict[tuple[str, int, int], DeadLetter]:
    """The dead letters by original position, once every poison record has one."""
    deadline = time.monotonic() + 30
    while True:
        found = {
            (d.topic, d.partition, d.offset): d for d in letters(kafka, PARTITIONS)
        }
        missing = [p for p in poison if p not in found]
        if not missing:
            return found
        assert time.monotonic() < deadline, f"not dead-lettered: {missing}"
        time.sleep(0.5)
