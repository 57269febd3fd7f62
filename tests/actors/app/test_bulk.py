"""`saga cancel|retry --all` with the filters of `saga list`, and --dry-run:
sagas found in the projections, each one's state read from its log (the last
word), what each would log decided offline, and a request per saga on
saga.requests, never a write behind a saga's back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.app.cli import main
from events.transport.partitions import home_partition
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.messages import MessageCodec
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run, reply_to
from tests.conftest import append_to_log, private_kafka

pytestmark = pytest.mark.broker

PARTITIONS = 2


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def sagas(kafka: KafkaSettings, data: Path, running: int) -> list[Run]:
    """``running`` sagas at the payment, one completed, in the log and in
    published projections."""
    runs = []
    for n in range(running):
        run = Run(f"s-pay-{n}")
        run.start(now=1_000)
        run.feed(reply_to(run.sent[-1], 1_040))
        runs.append(run)
    done = Run("s-done")
    done.start(now=1_000)
    done.feed(reply_to(done.sent[-1], 1_040, success=False))  # rejected
    runs.append(done)
    db = open_store(data / "projections.duckdb")
    writer = ProjectionWriter(db)
    batch = []
    for run in runs:
        append_to_log(kafka, home_partition(run.saga_id, PARTITIONS), run.records())
        batch += [Consumed("saga.events", 0, len(batch) + i, raw)
                  for i, raw in enumerate(run.log)]  # fmt: skip
    writer.apply(batch)
    writer.publish(data / "projections")
    db.close()
    return runs


def saga_cli(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], data: Path, *args: str
) -> tuple[int, str, str]:
    code = main([*args, "--bootstrap-servers", kafka.bootstrap_servers[0],
                 "--partitions", str(PARTITIONS), "--data-dir", str(data)])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def requests(kafka: KafkaSettings) -> list[tuple[str, str, dict[str, object]]]:
    codec = MessageCodec()
    found = []
    for record in read_to_end(kafka, {TP("saga.requests", p): 0 for p in range(2)}):
        message = codec.decode(record.value)
        found.append((message.saga_id, message.step_id, dict(message.payload)))
    return sorted(found)


def test_cancel_all_by_filter_dry_run_then_for_real(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sagas(kafka, tmp_path, running=3)
    code, out, err = saga_cli(kafka, capsys, tmp_path, "cancel", "--all",
                              "--step", "process_payment", "--reason",
                              "payments paused", "--dry-run", "--json")  # fmt: skip
    assert code == 0, err
    rehearsed = json.loads(out)
    assert [r["sagaId"] for r in rehearsed] == ["s-pay-2", "s-pay-1", "s-pay-0"]
    for item in rehearsed:
        assert item["refused"] == ""
        assert item["events"][0].startswith("cancel_requested")
        assert item["commands"] == [
            f"payment.commands.refund {item['sagaId']}:process_payment.compensate:1"
        ]
    assert requests(kafka) == []  # a dry run sends nothing
    # Every saga the projections hold, the ended one skipped with the reason.
    code, out, err = saga_cli(kafka, capsys, tmp_path, "cancel", "--all",
                              "--reason", "payments paused", "--operator", "ops@desk",
                              "--json")  # fmt: skip
    assert code == 0, err
    done = {r["sagaId"]: r for r in json.loads(out)}
    assert done["s-done"]["requestId"] is None
    assert "has ended (rejected)" in done["s-done"]["refused"]
    assert "skipped s-done: saga s-done has ended (rejected)" in err
    assert [(s, step) for s, step, _ in requests(kafka)] == [
        ("s-pay-0", "cancel"),
        ("s-pay-1", "cancel"),
        ("s-pay-2", "cancel"),
    ]
    assert {p["reason"] for _, _, p in requests(kafka)} == {"payments paused"}
    assert {p["operator"] for _, _, p in requests(kafka)} == {"ops@desk"}


def test_many_sagas_at_once_need_yes(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sagas(kafka, tmp_path, running=6)
    code, _, err = saga_cli(kafka, capsys, tmp_path, "cancel", "--all", "--status",
                            "running", "--reason", "stop")  # fmt: skip
    assert code == 2 and "6 sagas would be asked to cancel: add --yes" in err
    assert requests(kafka) == []
    code, out, err = saga_cli(kafka, capsys, tmp_path, "cancel", "--all", "--status",
                              "running", "--reason", "stop", "--yes")  # fmt: skip
    assert code == 0, err
    assert out.count("cancel requested for saga s-pay-") == 6
    code, _, err = saga_cli(kafka, capsys, tmp_path, "retry", "--all", "--status",
                            "running", "--reason", "again", "--dry-run")  # fmt: skip
    assert code == 0 and "0 of 6 saga(s) would take the retry" in err
    code, _, err = saga_cli(kafka, capsys, tmp_path, "cancel", "s-pay-1", "--all",
                            "--reason", "x")  # fmt: skip
    assert code == 2 and "name one SAGA_ID, or choose sagas with --all" in err


#: Version 2 of the deposit saga (a limits check before the payment), with
#: version 1 kept: what a deploy that lets sagas finish on 1 ships.
VERSION_2 = """
import msgspec

from actors.core import DEPOSIT, Action, Step

V2 = msgspec.structs.replace(
    DEPOSIT,
    version=2,
    previous=(DEPOSIT,),
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
DEFINITIONS = {V2.name: V2}
"""


def test_migrate_dry_run_names_the_sagas_whose_history_would_not_hold(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sagas(kafka, tmp_path, running=2)  # at the payment: past the new step
    early = Run("s-early")
    early.start(now=1_000)  # still at verification: it can move
    append_to_log(kafka, home_partition("s-early", PARTITIONS), early.records())
    candidate = tmp_path / "v2.py"
    candidate.write_text(VERSION_2)
    move = ("migrate", "s-early", "--to-version", "2", "--reason", "new limits")
    code, out, err = saga_cli(kafka, capsys, tmp_path, *move, "--definitions",
                              str(candidate), "--dry-run", "--json")  # fmt: skip
    assert code == 0, err
    [item] = json.loads(out)
    assert (
        item["events"] == ["definition_moved reason=new limits"]
        and item["divergence"] is None
    )
    code, out, err = saga_cli(kafka, capsys, tmp_path, "migrate", "s-pay-0",
                              "--to-version", "2", "--definitions", str(candidate),
                              "--reason", "new limits", "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "but its history diverges at record 3 on that version" in out
    assert "candidate: step_commanded step=check_limits attempt=1" in out
    # The deployed catalog has no version 2: the host would refuse, and so
    # does the dry run.
    code, out, err = saga_cli(kafka, capsys, tmp_path, "migrate", "s-early",
                              "--to-version", "2", "--reason", "x",
                              "--dry-run")  # fmt: skip
    assert code == 0 and "would be refused: saga 'deposit' has no version 2" in out
    assert requests(kafka) == []
    code, out, err = saga_cli(kafka, capsys, tmp_path, *move)
    assert code == 0, err
    [(saga_id, step, payload)] = requests(kafka)
    assert (saga_id, step, payload["version"]) == ("s-early", "migrate", 2)
