"""Money under doubt: every participant service frozen past a step's last retry.

The real platform (a private broker, local Ray, the three services on DuckDB)
runs deposits with short step timeouts. Mid-run every service process is
stopped with SIGSTOP until sagas at each step have timed out on their last
attempt (the log proves it), then continued. A freeze that does not get there
(the services answer fast: a saga the log shows waiting may have its reply on
the way already) is undone at once and tried again later. The services then work off
their queues, late replies included. The audit reads their DuckDB files: for
every saga, payments minus refunds equals deposits.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors.app.client import SagaClient
from actors.app.run import (
    audit_money,
    drain,
    platform_groups,
    seed_participants,
    workload,
)
from actors.core import (
    DEPOSIT,
    Fence,
    LogRecord,
    RetryPolicy,
    SagaCompleted,
    SagaDefinition,
    SagaState,
    Status,
    Step,
    StepTimedOut,
    replay,
)
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from actors.runtime.participants import participants_ready, start_participants
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.conftest import private_kafka, process_state

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]

PARTITIONS = 4
SEED = int(os.environ.get("SAGA_TEST_SEED", "20261126"))
#: Two attempts of 1.5 s with 0.2 s between: a step runs out of attempts about
#: 3.2 s after its first command, well inside the freeze.
TIMEOUT_MS = 1_500
RETRY = RetryPolicy(max_attempts=2, initial_backoff_ms=200, max_backoff_ms=1_000)


def quick(definition: SagaDefinition) -> SagaDefinition:
    def step(s: Step) -> Step:
        replace = msgspec.structs.replace
        action = replace(s.action, timeout_ms=TIMEOUT_MS, retry=RETRY)
        compensation = (
            None
            if s.compensation is None
            else replace(s.compensation, timeout_ms=TIMEOUT_MS, retry=RETRY)
        )
        return replace(s, action=action, compensation=compensation)

    return msgspec.structs.replace(
        definition, steps=tuple(step(s) for s in definition.steps)
    )


DEFINITIONS = {"deposit": quick(DEPOSIT)}


def log_records(kafka: KafkaSettings) -> list[LogRecord]:
    """The records of the log as every reader applies them (claims and a
    replaced owner's records left out)."""
    fence = Fence()
    starts = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    records = (
        fence.read(raw.partition, raw.value) for raw in read_to_end(kafka, starts)
    )
    return [record for record in records if record is not None]


def states_as_of(records: list[LogRecord], at_ms: int) -> dict[str, SagaState]:
    """Each saga's state from the records decided up to ``at_ms``."""
    states: dict[str, SagaState] = {}
    for record in records:
        if record.at <= at_ms:
            state = replay(states.get(record.saga_id), record)
            assert state is not None
            states[record.saga_id] = state
    return states


def wait_for(what: str, ready: Any, timeout_s: float, engine: Engine) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := ready()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; hosts: {engine.host_stats()}"
            )
        time.sleep(0.25)
    return found


class Sender:
    """A steady stream of starts, so sagas are at every step when the freeze
    comes; it holds back while the services are frozen, so no new sagas pile
    up during a freeze."""

    def __init__(self, client: SagaClient, requests: list[Any]) -> None:
        self.ids: set[str] = set()
        self.thawed = threading.Event()
        self.thawed.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, args=(client, requests))

    def start(self) -> None:
        self._thread.start()

    def _send(self, client: SagaClient, requests: list[Any]) -> None:
        for i in range(0, len(requests), 20):
            self.thawed.wait()
            if self._stop.is_set():
                return
            chunk = requests[i : i + 20]
            client.start_many(chunk)
            self.ids.update(saga_id for _, _, saga_id in chunk)
            time.sleep(0.05)

    def finish(self) -> None:
        self._stop.set()
        self.thawed.set()
        if self._thread.is_alive():
            self._thread.join()


def thaw(pids: dict[str, int]) -> None:
    for pid in pids.values():
        os.kill(pid, signal.SIGCONT)


def freeze_past_the_last_retry(
    kafka: KafkaSettings,
    engine: Engine,
    pids: dict[str, int],
    sender: Sender,
    rng: random.Random,
) -> Counter[tuple[str, int]]:
    """Stop every service until sagas at every step timed out on their last
    attempt (the log proves it), and leave them stopped; the timeouts by step
    and attempt since the freeze.

    The pipeline is full once sagas complete; the seeded extra count varies
    the moment. Services answer in batches and fast, so a step can be empty at
    a given instant, and a saga the log shows waiting may have its reply on
    the way already: a freeze that does not outlast some saga's last attempt
    at every step is undone, and tried again a little later."""
    enough = 50 + rng.randrange(100)
    steps = {"verify_user", "process_payment", "deposit"}
    timeouts: Counter[tuple[str, int]] = Counter()

    def completed() -> int:
        records = log_records(kafka)
        return sum(1 for r in records if type(r.events[-1]) is SagaCompleted)

    def past_last_retry(since: int) -> bool:
        timeouts.clear()
        timeouts.update(
            (e.step, e.attempt)
            for r in log_records(kafka)
            if r.at >= since
            for e in r.events
            if type(e) is StepTimedOut
        )
        last = {step for step, n in timeouts if n >= RETRY.max_attempts}
        return steps <= last

    for tries in range(10):
        goal = enough + 20 * tries
        wait_for("sagas to end", lambda: completed() >= goal, 120, engine)  # noqa: B023
        sender.thawed.clear()
        for pid in pids.values():
            os.kill(pid, signal.SIGSTOP)
        frozen_at = int(time.time() * 1000)  # the hosts' clock
        # A signal is delivered asynchronously: wait until it took.
        wait_for(
            "the services to stop",
            lambda: {process_state(pid, settle_s=0) for pid in pids.values()} == {"T"},
            10,
            engine,
        )
        waiting = Counter(
            s.step
            for s in states_as_of(log_records(kafka), frozen_at).values()
            if s.status is Status.RUNNING
        )
        print(f"froze after {len(sender.ids)} starts, waiting at {dict(waiting)}")
        try:
            # Two attempts of 1.5 s and a backoff: about 3.2 s.
            wait_for(
                "the last attempts to time out",
                lambda: past_last_retry(frozen_at),  # noqa: B023
                20,
                engine,
            )
            return timeouts
        except AssertionError:
            print(f"  timeouts since: {dict(timeouts)}; thawed, again")
            thaw(pids)
            sender.thawed.set()
    raise AssertionError("no freeze outlasted a last attempt at every step")


def test_a_freeze_of_every_service_past_the_last_retry_creates_no_money(
    tmp_path: Path,
) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    # More than the sender gets through before the freeze: it stops there.
    load = workload(5_000, SEED, f"freeze{rng.randrange(10**6)}")
    seed_participants(tmp_path, load)
    with private_kafka(PARTITIONS) as kafka:
        engine = Engine(kafka, EngineSettings(hosts=2, routers=1), DEFINITIONS)
        services = start_participants(kafka, tmp_path)
        pids: dict[str, int] = {}
        client = SagaClient(kafka, DEFINITIONS)
        sender = Sender(client, load.requests)
        try:
            engine.wait_ready()
            participants_ready(services)
            pids = {name: ray.get(h.pid.remote()) for name, h in services.items()}
            sender.start()
            timeouts = freeze_past_the_last_retry(kafka, engine, pids, sender, rng)
            sender.finish()
            print(f"last attempts timed out: {dict(timeouts)}")
            thaw(pids)
            ids = sender.ids

            def ended() -> dict[str, SagaState] | None:
                states = client.states()
                done = {i: states[i] for i in ids if i in states}
                terminal = all(s.status.terminal for s in done.values())
                return done if len(done) == len(ids) and terminal else None

            states = wait_for("every saga to end", ended, 120, engine)
            assert drain(kafka, platform_groups(kafka), 60, print) == 0
        finally:
            sender.finish()
            thaw(pids)
            client.close()
            engine.stop()
            ray.get([h.stop.remote() for h in services.values()], timeout=60)
            for handle in services.values():
                ray.kill(handle, no_restart=True)

    outcomes = {i: str(s.status) for i, s in states.items()}
    print(f"outcomes {Counter(outcomes.values())}")
    found = audit_money(tmp_path, outcomes, ids, load)
    print(f"audit {found}")
    assert found == dict.fromkeys(found, 0)
    assert Counter(outcomes.values())["compensated"] > 0
