"""`saga dlq list|show|replay` on the real broker: inspect letters, send them back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest

from actors.app.cli import main
from events.transport.dlq import Entry, linked
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.topics import SAGA_DLQ
from tests.conftest import private_kafka

pytestmark = pytest.mark.broker


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka() as settings:
        yield settings


def letter(
    topic: str, partition: int, offset: int, payload: bytes, **extra: object
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        error="handler failed 5 times, last: RuntimeError('db down')",
        dead_at=datetime(2026, 11, 25, 12, 0, offset, tzinfo=UTC),
        source="payment-service",
        payload=payload,
        payload_size=extra.pop("payload_size", len(payload)),  # type: ignore[arg-type]
        key="s-1",
        saga_id="s-1",
        attempts=5,
        **extra,  # type: ignore[arg-type]
    )


def cli(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = main([*args, "--bootstrap-servers", kafka.bootstrap_servers[0]])
    out, err = capsys.readouterr()
    return code, out, err


def publish(kafka: KafkaSettings, *letters: DeadLetter, partition: int = 3) -> None:
    codec = DeadLetterCodec()
    with KafkaMessagePublisher(kafka) as publisher:
        for item in letters:
            publisher.publish_raw(
                SAGA_DLQ, "s-1", codec.encode(item), partition=partition
            )
        publisher.flush()


def test_list_show_and_replay(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(
        kafka,
        letter("payment.commands.process", 3, 7, b'{"hello": "again"}'),
        letter("user.commands.verify", 3, 8, b"\xff\xfe binary"),
        letter("payment.commands.process", 3, 9, b"x" * 10, payload_size=99),
        # What a saga host could not do (a deadline), naming the saga log.
        letter("saga.events", 3, 10, b'{"sagaId": "s-1"}'),
    )
    code, out, err = cli(kafka, capsys, "dlq", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["3:0", "3:1", "3:2", "3:3"]
    assert rows[0]["topic"] == "payment.commands.process" and rows[0]["attempts"] == 5
    assert {r["state"] for r in rows} == {"open"}
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--topic", "user.commands.verify")
    assert "3:1" in out and "3:0" not in out and "db down" in out

    code, out, _ = cli(kafka, capsys, "dlq", "show", "3:0", "--json")
    shown = json.loads(out)
    assert (
        shown["payload"] == '{"hello": "again"}' and shown["payloadEncoding"] == "utf-8"
    )
    code, out, _ = cli(kafka, capsys, "dlq", "show", "3:1", "--json")
    assert json.loads(out)["payloadEncoding"] == "base64"

    code, out, _ = cli(kafka, capsys, "dlq", "replay", "3:0")
    assert code == 0 and "replayed 3:0 -> payment.commands.process/3/0" in out
    back = list(read_to_end(kafka, {TP("payment.commands.process", 3): 0}))
    assert [(r.key, r.value) for r in back] == [(b"s-1", b'{"hello": "again"}')]
    assert list(read_to_end(kafka, {TP("user.commands.verify", 3): 0})) == []
    # Replayed: it leaves the open list, and is never sent twice.
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == ["3:1", "3:2", "3:3"]
    code, _, err = cli(kafka, capsys, "dlq", "replay", "3:0")
    assert code == 1 and "3:0 was replayed at" in err
    code, out, _ = cli(kafka, capsys, "dlq", "replay", "--all", "--topic",
                       "payment.commands.process", "--dry-run", "--json")  # fmt: skip
    [rehearsed] = json.loads(out)
    assert rehearsed["id"] == "3:2" and rehearsed["verdict"] == "refused"
    assert "kept only part of an oversized original" in rehearsed["reason"]
    assert len(list(read_to_end(kafka, {TP("payment.commands.process", 3): 0}))) == 1

    code, _, err = cli(kafka, capsys, "dlq", "replay", "3:2")
    assert code == 1 and "kept only part of an oversized original" in err
    code, _, err = cli(kafka, capsys, "dlq", "replay", "3:3")
    assert code == 1 and "name a log topic" in err
    assert list(read_to_end(kafka, {TP("saga.events", 3): 0})) == []
    code, _, err = cli(kafka, capsys, "dlq", "replay")
    assert code == 2 and "PARTITION:OFFSET, or choose --all" in err
    code, _, err = cli(kafka, capsys, "dlq", "show", "nonsense")
    assert code == 1 and "must be PARTITION:OFFSET" in err

    # Resolved: closed without a replay, with the operator's reason.
    with pytest.raises(SystemExit) as exited:  # argparse's own: --reason is required
        cli(kafka, capsys, "dlq", "resolve", "3:2", "3:3")
    assert exited.value.code == 2 and "--reason" in capsys.readouterr().err
    code, out, _ = cli(kafka, capsys, "dlq", "resolve", "3:2", "3:3", "--reason",
                       "settled by hand", "--operator", "ops@desk")  # fmt: skip
    assert code == 0 and "resolved 3:2" in out and "resolved 3:3" in out
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--state", "all", "--json")
    states = {r["id"]: (r["state"], r["action"]) for r in json.loads(out)}
    assert states["3:0"][0] == "replayed"
    assert states["3:0"][1]["sent"] == "payment.commands.process/3/0"
    assert states["3:1"] == ("open", None)
    assert states["3:3"][0] == "resolved"
    assert states["3:3"][1]["reason"] == "settled by hand"
    assert states["3:3"][1]["operator"] == "ops@desk"
    code, _, err = cli(kafka, capsys, "dlq", "resolve", "3:3", "--reason", "again")
    assert code == 1 and "3:3 was resolved at" in err
    # replay --all sends each open letter once: the second one finds none.
    verify = {TP("user.commands.verify", 3): 0}
    code, out, err = cli(kafka, capsys, "dlq", "replay", "--all")
    assert code == 0 and out == "replayed 3:1 -> user.commands.verify/3/0\n"
    code, out, err = cli(kafka, capsys, "dlq", "replay", "--all")
    assert code == 0 and out == "" and "0 letter(s) replayed" in err
    assert len(list(read_to_end(kafka, verify))) == 1


def test_filters_groups_links_and_ids_that_do_not_exist(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Letters found by saga, step, error and age, counted by error with the
    sagaIds masked; the same message dead again links to its earlier letter;
    an id past the queue's end is told from the end, not by waiting on a read."""

    def of(
        saga: str, step: str, offset: int, error: str, **extra: object
    ) -> DeadLetter:
        status = str(extra.pop("saga_status", "running"))
        return msgspec.structs.replace(
            letter("account.events.deposit", 1, offset, b"{}", **extra),
            saga_id=saga,
            key=saga,
            step=step,
            error=error.format(saga=saga),
            saga_type="deposit",
            saga_status=status,
        )

    publish(
        kafka,
        of("s-1", "deposit", 1, "saga {saga} is waiting on step 'a', not 'b'",
           message_id="m-1"),
        of("s-2", "deposit", 2, "saga {saga} is waiting on step 'a', not 'b'"),
        of("s-3", "process_payment", 3, "invalid JSON", saga_status="compensating"),
        of("s-1", "deposit", 4, "saga {saga} is waiting on step 'a', not 'b'",
           message_id="m-1"),
    )  # fmt: skip
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--saga-id", "s-1", "--json")
    rows = json.loads(out)
    assert [(r["id"], r["previous"]) for r in rows] == [("3:0", None), ("3:3", "3:0")]
    assert rows[0]["sagaType"] == "deposit" and rows[0]["sagaStatus"] == "running"
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--step", "process_payment",
                       "--json")  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == ["3:2"]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--error", "INVALID", "--json")
    assert [r["id"] for r in json.loads(out)] == ["3:2"]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--saga-status", "compensating",
                       "--type", "deposit", "--json")  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == ["3:2"]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--type", "withdraw", "--json")
    assert json.loads(out) == []
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--group-by", "status", "--json")
    assert json.loads(out) == [
        {"status": "running", "letters": 3},
        {"status": "compensating", "letters": 1},
    ]
    # The letters died at 12:00:01..04 (their dead_at).
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--since",
                       "2026-11-25T12:00:04+00:00", "--json")  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == ["3:3"]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--until",
                       "2026-11-25T12:00:03+00:00", "--json")  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == ["3:0", "3:1"]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--group-by", "error", "--json")
    assert json.loads(out) == [
        {"error": "saga <saga> is waiting on step 'a', not 'b'", "letters": 3},
        {"error": "invalid JSON", "letters": 1},
    ]
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--group-by", "saga")
    assert out.splitlines()[1].split() == ["2", "s-1"]

    code, _, err = cli(kafka, capsys, "dlq", "show", "3:4")
    assert code == 1 and "partition 3 of saga.dlq holds offsets below 4" in err
    code, _, err = cli(kafka, capsys, "dlq", "show", "99:0")
    assert code == 1 and "saga.dlq has partitions 0..5" in err


def test_acting_on_many_letters_asks_first(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(kafka, *(letter("user.commands.verify", 3, n, b"{}") for n in range(6)))
    code, _, err = cli(kafka, capsys, "dlq", "resolve", "--all", "--reason", "noise")
    assert code == 2 and "6 letters would be resolved: add --yes" in err
    code, out, _ = cli(kafka, capsys, "dlq", "resolve", "--all", "--reason", "noise",
                       "--dry-run")  # fmt: skip
    assert code == 0 and out.count("would resolve it") == 6
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--json")
    assert len(json.loads(out)) == 6  # a dry run changed nothing
    code, out, _ = cli(kafka, capsys, "dlq", "resolve", "--all", "--reason", "noise",
                       "--yes", "--json")  # fmt: skip
    assert code == 0 and len(json.loads(out)) == 6
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--json")
    assert json.loads(out) == []


def test_a_refused_release_links_to_the_letter_it_acted_on() -> None:
    """A release request the saga refused (the replayed message still broken)
    is a letter of its own, on saga.requests: it names the letter it acted on."""
    first = Entry(2, 5, letter("payment.events.process", 0, 3, b"{}"))
    refused = Entry(
        1,
        9,
        msgspec.structs.replace(
            letter("saga.requests", 1, 40, b"{}"),
            message_id="replayed:2:5:0123456789abcdef",
        ),
    )
    unrelated = Entry(1, 10, letter("user.events.verify", 0, 4, b"[]"))
    found = {e.id: e.previous for e in linked([first, refused, unrelated])}
    assert found == {"2:5": None, "1:9": "2:5", "1:10": None}
