"""The engine on the real broker and a local Ray: hosts, routers, the log.

Each test gets its own broker, so logs and consumer groups start empty. The
responder stands in for the participant services and audits their effects.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import pytest
import ray

from actors.app.client import SagaClient
from actors.core import DEPOSIT, SagaDefinition, SagaState, Status, Step
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.dead_letters import DeadLetter
from events.wire.messages import EventMessage, MessageCodec
from events.wire.topics import ALL_TOPICS
from tests.actors.runtime.responders import Responder
from tests.conftest import settings_for
from tests.reading import letters as read_letters

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]

PARTITIONS = 6


def slow_to_time_out(definition: SagaDefinition) -> SagaDefinition:
    """Timeouts far beyond a restart, so every command is attempt 1 and an
    effect applied twice can only be the engine's fault."""

    def patient(step: Step) -> Step:
        replace = msgspec.structs.replace
        action = replace(step.action, timeout_ms=120_000)
        compensation = (
            None
            if step.compensation is None
            else replace(step.compensation, timeout_ms=120_000)
        )
        return replace(step, action=action, compensation=compensation)

    return msgspec.structs.replace(
        definition, steps=tuple(patient(s) for s in definition.steps)
    )


DEFINITIONS = {"deposit": slow_to_time_out(DEPOSIT)}


@dataclass
class Platform:
    kafka: KafkaSettings
    client: SagaClient
    responder: Responder

    def engine(self, **options: object) -> Engine:
        return Engine(
            self.kafka,
            EngineSettings(hosts=2, routers=1),
            DEFINITIONS,
            **options,  # type: ignore[arg-type]
        )


@contextmanager
def running_platform() -> Iterator[Platform]:
    """A broker of its own with the topics, a responder and a client."""
    with EmbeddedBroker() as broker:
        kafka = settings_for(broker.bootstrap)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
        responder = Responder(kafka, PARTITIONS)
        with SagaClient(kafka, DEFINITIONS) as client:
            yield Platform(kafka, client, responder)
        responder.close()


@pytest.fixture
def platform() -> Iterator[Platform]:
    with running_platform() as running:
        yield running


Request = tuple[str, dict[str, object], str | None]


def mixed_requests(count: int, seed: int) -> tuple[list[Request], Counter[Status]]:
    """Deposits of which about 10% are rejected and 10% compensated."""
    rng = random.Random(seed)
    requests = []
    expected: Counter[Status] = Counter()
    for i in range(count):
        roll = rng.random()
        user = f"blocked-{i}" if roll < 0.1 else f"user-{i}"
        amount = 5_000 if 0.1 <= roll < 0.2 else rng.randint(1, 1_000)
        expected[
            Status.REJECTED
            if roll < 0.1
            else Status.COMPENSATED
            if roll < 0.2
            else Status.COMPLETED
        ] += 1
        saga_input = {
            "userId": user,
            "accountId": f"acct-{i}",
            "amount": amount,
            "currency": "USD",
        }
        requests.append(("deposit", saga_input, f"saga-{seed}-{i}"))
    return requests, expected


def wait_terminal(
    client: SagaClient, ids: list[str], timeout_s: float = 120.0
) -> dict[str, SagaState]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = client.states()
        pending = [i for i in ids if i not in states or not states[i].status.terminal]
        if not pending:
            return states
        if time.monotonic() > deadline:
            sample = {i: states.get(i) for i in pending[:3]}
            raise AssertionError(f"{len(pending)} sagas not terminal: {sample}")
        time.sleep(1.0)


def wait_finished(engine: Engine, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(s.finished for s in engine.host_stats()) < count:
        assert time.monotonic() < deadline, "sagas never got going"
        time.sleep(0.05)


def audit(platform: Platform, states: dict[str, SagaState], ids: list[str]) -> None:
    """From the participants' side: every effect once, refunds where due."""
    twice = {k: n for k, n in platform.responder.effects.items() if n > 1}
    assert not twice, f"effects applied twice: {list(twice.items())[:5]}"
    for saga_id in ids:
        state = states[saga_id]
        refunded = platform.responder.effects[(saga_id, "process_payment.compensate")]
        assert refunded == (1 if state.status is Status.COMPENSATED else 0), state


def test_sagas_run_to_their_outcomes(platform: Platform) -> None:
    engine = platform.engine()
    try:
        requests, expected = mixed_requests(300, seed=1)
        ids = platform.client.start_many(requests)
        states = wait_terminal(platform.client, ids)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        # Terminal sagas left the hosts' memory; their ids stay in the books.
        stats = engine.host_stats()
        assert sum(s.in_flight for s in stats) == 0
        assert engine.state(ids[0]) is None
        assert sum(s.finished for s in stats) == len(ids)
        # History and state for one saga, read back from the log.
        history = platform.client.history(ids[0])
        assert history[0].events[0].saga_type == "deposit"  # type: ignore[union-attr]
        assert [r.seq for r in history] == sorted(r.seq for r in history)
        state = platform.client.state(ids[0])
        assert state is not None and state.status is states[ids[0]].status
    finally:
        engine.stop()


def test_malformed_and_unknown_replies_are_dead_lettered_without_a_stall(
    platform: Platform,
) -> None:
    engine = platform.engine()
    try:
        saga_id = "saga-after-the-poison"
        partition = home_partition(saga_id, PARTITIONS)
        codec = MessageCodec()
        with KafkaMessagePublisher(platform.kafka) as raw:
            for value in (
                b"not json at all",
                b'{"type": "event", "sagaId": "x"}',
                codec.encode(
                    EventMessage(
                        message_id="stray-1",
                        saga_id="nobody-started-this",
                        step_id="verify_user",
                        timestamp=datetime.now(UTC),
                        success=True,
                    )
                ),
            ):
                # All on the same partition as the saga that must still run.
                raw.publish_raw(
                    "user.events.verify", saga_id, value, partition=partition
                )
            raw.flush()
        # The poison is handled before the saga starts: a record keyed by a
        # saga in flight that cannot be read holds that saga behind its dead
        # letter (sequenced), which is not what this test is about.
        deadline = time.monotonic() + 60
        while len(dead_letters(platform.kafka)) < 3:
            assert time.monotonic() < deadline, "the poison was not dead-lettered"
            time.sleep(0.2)
        requests, _ = mixed_requests(1, seed=2)
        ids = platform.client.start_many([("deposit", requests[0][1], saga_id)])
        states = wait_terminal(platform.client, ids, timeout_s=60)
        assert states[saga_id].status is Status.COMPLETED
        letters = dead_letters(platform.kafka)
        assert len(letters) == 3
        reasons = " | ".join(letter.error for letter in letters)
        assert "not JSON" in reasons
        assert "required field 'messageId' is missing" in reasons
        # The stray reply was keyed by our saga's id but names another saga.
        assert "differs from sagaId 'nobody-started-this'" in reasons
        assert all(letter.topic == "user.events.verify" for letter in letters)
        assert letters[0].payload == b"not json at all"
    finally:
        engine.stop()


def test_reply_for_a_saga_nobody_knows_is_dead_lettered(platform: Platform) -> None:
    engine = platform.engine()
    try:
        with KafkaMessagePublisher(platform.kafka) as publisher:
            publisher.publish(
                "payment.events.process",
                EventMessage(
                    message_id="orphan-1",
                    saga_id="orphan",
                    step_id="process_payment",
                    timestamp=datetime.now(UTC),
                    success=True,
                ),
                partition=home_partition("orphan", PARTITIONS),
            )
            publisher.flush()
        deadline = time.monotonic() + 60
        while not (letters := dead_letters(platform.kafka)):
            assert time.monotonic() < deadline, "no dead letter arrived"
            time.sleep(0.5)
        assert letters[0].saga_id == "orphan"
        assert "no saga orphan is known" in letters[0].error
    finally:
        engine.stop()


def dead_letters(kafka: KafkaSettings) -> list[DeadLetter]:
    return sorted(read_letters(kafka, PARTITIONS), key=lambda letter: letter.offset)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def wait_pid_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def test_host_killed_mid_flight_loses_nothing_and_applies_nothing_twice(
    platform: Platform,
) -> None:
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    engine = platform.engine()
    try:
        requests, expected = mixed_requests(1_000, seed=seed)
        victim = engine.hosts[random.Random(seed).randrange(len(engine.hosts))]
        pid = ray.get(victim.pid.remote())
        ids = platform.client.start_many(requests)
        # Kill while sagas are in flight: some have ended, most have not.
        wait_finished(engine, 50)
        in_flight = ray.get(victim.stats.remote()).in_flight
        kill(pid)
        wait_pid_gone(pid)
        states = wait_terminal(platform.client, ids)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        # The fault really fired: a new process restored from the log and
        # re-sent what was awaiting an answer.
        assert in_flight > 0, "the host died with no saga in flight"
        assert ray.get(victim.pid.remote()) != pid
        restored = ray.get(victim.stats.remote())
        assert restored.restored_records > 0 or restored.restored_sagas > 0
        print(f"restore: {restored}")
    finally:
        engine.stop()


def test_router_killed_between_host_ack_and_commit_loses_nothing(
    platform: Platform,
) -> None:
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    group = f"orchestrator-{uuid.uuid4().hex[:6]}"
    engine = platform.engine(group_id=group)
    try:
        router = engine.routers[0]
        pid = ray.get(router.pid.remote())
        # The router SIGKILLs itself after its 3rd host acknowledgement, before
        # the commit: those records are redelivered to its next incarnation.
        ray.get(router.die_after_acks.remote(3))
        requests, expected = mixed_requests(1_000, seed=seed)
        ids = platform.client.start_many(requests)
        wait_pid_gone(pid, timeout_s=60)
        states = wait_terminal(platform.client, ids, timeout_s=180)
        assert Counter(states[i].status for i in ids) == expected
        audit(platform, states, ids)
        assert ray.get(router.pid.remote()) != pid
        # The redelivered records really arrived, and were recognised.
        duplicates = sum(s.duplicates for s in engine.host_stats())
        assert duplicates > 0
        print(f"duplicates recognised after the router's death: {duplicates}")
    finally:
        engine.stop()
