"""`saga check`, the deploy gate, on the real broker's log (and on the
projections of a finished run): an unchanged definition passes, a step
inserted before the current step of some sagas in flight names exactly those."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from actors.app.cli import main
from actors.core import DEPOSIT
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run, reply_to
from tests.actors.core.test_compatibility import CHECKED
from tests.conftest import append_to_log, private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2

#: The candidate as an operator keeps it: a module of definitions.
CANDIDATE = """
import msgspec

from actors.core import DEPOSIT, Action, Step

CHECKED = msgspec.structs.replace(
    DEPOSIT,
    steps=(
        DEPOSIT.steps[0],
        Step(
            name="check_limits",
            action=Action(
                command_topic="payment.commands.limits",
                payload={"userId": "$input.userId", "amount": "$input.amount"},
            ),
        ),
        *DEPOSIT.steps[1:],
    ),
)
DEFINITIONS = {CHECKED.name: CHECKED}
"""


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def sagas_in_the_log(kafka: KafkaSettings) -> None:
    """Two sagas at each step, and one that completed (never checked)."""
    runs = []
    for n in range(2):
        at_verify = Run(f"s-verify-{n}")
        at_verify.start(now=1_000)
        at_payment = Run(f"s-payment-{n}")
        at_payment.start(now=1_000)
        at_payment.feed(reply_to(at_payment.sent[-1], 1_040))
        at_deposit = Run(f"s-deposit-{n}")
        at_deposit.start(now=1_000)
        at_deposit.feed(reply_to(at_deposit.sent[-1], 1_040))
        at_deposit.feed(reply_to(at_deposit.sent[-1], 1_090, paymentId="p-1"))
        runs += [at_verify, at_payment, at_deposit]
    done = Run("s-done")
    done.start(now=1_000)
    done.feed(reply_to(done.sent[-1], 1_040))
    done.feed(reply_to(done.sent[-1], 1_090, paymentId="p-2"))
    done.feed(reply_to(done.sent[-1], 1_130))
    for run in [*runs, done]:
        append_to_log(kafka, home_partition(run.saga_id, PARTITIONS), run.records())


def check(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    server = kafka.bootstrap_servers[0]
    code = main(["check", *args, "--bootstrap-servers", server,
                 "--partitions", str(PARTITIONS)])  # fmt: skip
    return code, capsys.readouterr().out


def test_the_gate_names_exactly_the_sagas_past_an_inserted_step(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sagas_in_the_log(kafka)
    code, out = check(kafka, capsys, "--definitions", "actors.core.catalog")
    assert code == 0, out
    assert "checked 6 saga(s) in flight (deposit)" in out and "safe to deploy" in out
    unchanged = tmp_path / "unchanged.json"
    unchanged.write_bytes(msgspec.json.encode([DEPOSIT]))
    code, out = check(kafka, capsys, "--definitions", str(unchanged), "--json")
    assert code == 0 and json.loads(out)["diverging"] == []

    candidate = tmp_path / "candidate.py"
    candidate.write_text(CANDIDATE)
    code, out = check(kafka, capsys, "--definitions", str(candidate), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["checked"] == 6
    diverging = {d["sagaId"]: d for d in report["diverging"]}
    assert set(diverging) == {"s-payment-0", "s-payment-1", "s-deposit-0",
                              "s-deposit-1"}  # fmt: skip
    first = diverging["s-deposit-1"]
    assert first["seq"] == 3
    assert first["logged"][1] == "step_commanded step=process_payment attempt=1"
    assert first["candidate"][1] == "step_commanded step=check_limits attempt=1"
    code, out = check(kafka, capsys, "--definitions", str(candidate))
    assert code == 1 and "4 would diverge:" in out
    assert "s-payment-0 at record 3: the candidate decides otherwise" in out
    # The module the test built its candidate from says the same.
    assert CHECKED.steps[1].name == "check_limits"


def test_definitions_that_cannot_be_loaded_are_named(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    code = main(["check", "--definitions", str(empty), "--bootstrap-servers",
                 kafka.bootstrap_servers[0]])  # fmt: skip
    assert code == 2 and "must define DEFINITIONS" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('[{"name": "deposit", "steps": []}]')
    code = main(["check", "--definitions", str(broken), "--bootstrap-servers",
                 kafka.bootstrap_servers[0]])  # fmt: skip
    assert code == 2 and "has no steps" in capsys.readouterr().err
    code = main(["check", "--definitions", "no.such.module", "--bootstrap-servers",
                 kafka.bootstrap_servers[0]])  # fmt: skip
    assert code == 2 and "cannot import it" in capsys.readouterr().err


def test_with_no_broker_the_gate_reads_the_projections(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A finished run's projections hold its sagas in flight: checked the same."""
    at_payment = Run("s-payment")
    at_payment.start(now=1_000)
    at_payment.feed(reply_to(at_payment.sent[-1], 1_040))
    at_verify = Run("s-verify")
    at_verify.start(now=1_000)
    db = open_store(tmp_path / "projections.duckdb")
    writer = ProjectionWriter(db)
    writer.apply(
        [
            Consumed("saga.events", 0, offset, raw)
            for offset, raw in enumerate([*at_payment.log, *at_verify.log])
        ]
    )
    writer.publish(tmp_path / "projections")
    db.close()
    candidate = tmp_path / "candidate.py"
    candidate.write_text(CANDIDATE)
    code = main(["check", "--definitions", str(candidate), "--data-dir",
                 str(tmp_path), "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["checked"] == 2
    assert [d["sagaId"] for d in report["diverging"]] == ["s-payment"]
