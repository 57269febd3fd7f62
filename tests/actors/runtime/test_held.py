"""Must hold (real broker, real Ray): a poison reply for saga A while A has
later messages queued holds A's later messages behind it, in A's log, while
the other sagas keep completing; `saga dlq replay` of the fixed letter lets A
complete, its held messages taken in order after the replayed one; `saga dlq
resolve` of another held saga's letter applies the reply it held.

The test plays the participant services itself (no demo services run), so it
decides exactly which reply is poison and when."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actors.app.cli import main
from actors.app.client import SagaClient
from actors.core import (
    HoldReleased,
    ReplyHeld,
    SagaHeld,
    SagaState,
    Status,
    StepSucceeded,
)
from actors.engine.settings import EngineSettings
from actors.runtime.engine import Engine
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import COMMAND_TOPICS
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2
INPUT = {"userId": "u-1", "accountId": "a-1", "amount": 5, "currency": "USD"}
CODEC = MessageCodec()
OTHERS = [f"go-{n}" for n in range(6)]


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def answer(command: CommandMessage, message_id: str = "") -> EventMessage:
    payload = {"paymentId": f"pay-{command.saga_id}"}
    return EventMessage(
        message_id=message_id or f"r-{command.message_id}",
        saga_id=command.saga_id,
        step_id=command.step_id,
        timestamp=datetime.now(UTC),
        success=True,
        payload=payload if command.step_id == "process_payment" else {},
        command_id=command.message_id,
    )


class Services:
    """The participants, played: every command answered with a success,
    except the first verification of the sagas in ``poisoned``, answered
    with a reply that breaks the wire schema and then with the good one."""

    def __init__(self, kafka: KafkaSettings, poisoned: set[str]) -> None:
        self._kafka = kafka
        self._poisoned = poisoned
        self._read = {TP(t, p): 0 for t in COMMAND_TOPICS for p in range(PARTITIONS)}
        self.answered: set[str] = set()
        self.poison: dict[str, bytes] = {}
        self.later: dict[str, EventMessage] = {}

    def answer_all(self) -> None:
        out = []
        for record in read_to_end(self._kafka, self._read):
            self._read[record.tp] = record.offset + 1
            command = CODEC.decode(record.value)
            assert isinstance(command, CommandMessage)
            if command.message_id in self.answered:
                continue
            self.answered.add(command.message_id)
            topic = command.metadata["replyTopic"]
            good = answer(command)
            if command.step_id == "verify_user" and command.saga_id in self._poisoned:
                bad = CODEC.encode(good).replace(b'"success":true', b'"success":"y"')
                self.poison[command.saga_id] = bad
                self.later[command.saga_id] = good
                out.append(Outgoing(topic, command.saga_id, bad))
            out.append(Outgoing(topic, command.saga_id, CODEC.encode(good)))
        if out:
            with KafkaMessagePublisher(self._kafka) as publisher:
                publisher.send_all(out)


def states(client: SagaClient, ids: list[str]) -> dict[str, SagaState | None]:
    return {saga_id: client.state(saga_id) for saga_id in ids}


def until(
    services: Services,
    client: SagaClient,
    ids: list[str],
    done: object,
    timeout_s: float = 90.0,
) -> dict[str, SagaState | None]:
    """Answer commands until ``done(states)`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        services.answer_all()
        found = states(client, ids)
        if done(found):  # type: ignore[operator]
            return found
        assert time.monotonic() < deadline, {
            k: v and v.status for k, v in found.items()
        }
        time.sleep(0.3)


def cli(kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main([*args, "--bootstrap-servers", kafka.bootstrap_servers[0],
                 "--partitions", str(PARTITIONS)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.usefixtures("ray_local")
def test_a_held_saga_waits_in_order_while_the_others_complete(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    held = ["held-a", "held-c"]
    ids = [*held, *OTHERS]
    services = Services(kafka, set(held))
    engine = Engine(kafka, EngineSettings(hosts=2, routers=1))
    try:
        engine.wait_ready()
        with SagaClient(kafka) as client:
            for saga_id in ids:
                client.start("deposit", INPUT, saga_id)

            def others_done_and_held(found: dict[str, SagaState | None]) -> bool:
                return all(
                    (s := found[i]) is not None and s.status is Status.COMPLETED
                    for i in OTHERS
                ) and all((s := found[i]) is not None and s.held_replies for i in held)

            found = until(services, client, ids, others_done_and_held)
            # A and C are held at verification, their good reply kept, not applied.
            for saga_id in held:
                state = found[saga_id]
                assert state is not None and state.status is Status.RUNNING
                assert state.step == "verify_user" and state.held
                [kept] = state.held_replies
                assert kept.reply_id == services.later[saga_id].message_id
            shown = cli(kafka, capsys, "show", "held-a")
            assert (
                f"held: behind the dead letter of the message at {found['held-a'].held}"
                in shown
            )
            assert f"held reply {services.later['held-a'].message_id}" in shown
            assert "  letter " in shown and "(open) of user.events.verify/" in shown
            letters = json.loads(cli(kafka, capsys, "dlq", "list", "--json"))
            by_saga = {row["sagaId"]: row for row in letters}
            assert set(by_saga) == set(held)
            assert by_saga["held-a"]["sagaStatus"] == "running"
            assert by_saga["held-a"]["step"] == ""  # it did not decode

            # A: the fixed letter replayed (a new reply id: the fix).
            fixed = tmp_path / "fixed.json"
            fixed.write_bytes(
                services.poison["held-a"]
                .replace(b'"success":"y"', b'"success":true')
                .replace(b'"messageId":"r-', b'"messageId":"fixed-r-')
            )
            letter_a = by_saga["held-a"]["id"]
            out = cli(kafka, capsys, "dlq", "replay", letter_a, "--payload",
                      str(fixed), "--reason", "fixed the reply")  # fmt: skip
            assert "-> saga.requests/" in out
            # C: its letter resolved, the reply it held applied.
            cli(kafka, capsys, "dlq", "resolve", by_saga["held-c"]["id"],
                "--reason", "the good reply came after it")  # fmt: skip
            found = until(
                services,
                client,
                held,
                lambda f: all(s and s.status is Status.COMPLETED for s in f.values()),
            )
            history = {saga_id: client.history(saga_id) for saga_id in held}
    finally:
        engine.stop()
    events = {
        saga_id: [e for r in records for e in r.events]
        for saga_id, records in history.items()
    }
    for saga_id in held:
        kinds = [type(e) for e in events[saga_id]]
        held_at = kinds.index(SagaHeld)
        assert kinds[held_at + 1] is ReplyHeld and kinds[held_at + 2] is HoldReleased

    def released(saga_id: str) -> list[object]:
        kinds = [type(e) for e in events[saga_id]]
        return list(events[saga_id][kinds.index(HoldReleased) :])

    # A: the fixed reply applied first; the held one then passed over, the
    # step being answered already.
    first = released("held-a")[1]
    assert isinstance(first, StepSucceeded) and first.reply_id.startswith("fixed-r-")
    # C: the reply it held is the step's answer.
    taken = released("held-c")[1]
    assert isinstance(taken, StepSucceeded)
    assert taken.reply_id == services.later["held-c"].message_id
    code = main(["dlq", "list", "--bootstrap-servers", kafka.bootstrap_servers[0],
                 "--json"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out) == []
