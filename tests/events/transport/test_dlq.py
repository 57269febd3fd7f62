"""`saga dlq list|show|replay` on the real broker: inspect letters, send them back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from actors.app.cli import main
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


def test_list_show_and_replay(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    codec = DeadLetterCodec()
    with KafkaMessagePublisher(kafka) as publisher:
        for item in (
            letter("payment.commands.process", 3, 7, b'{"hello": "again"}'),
            letter("user.commands.verify", 3, 8, b"\xff\xfe binary"),
            letter("payment.commands.process", 3, 9, b"x" * 10, payload_size=99),
            # What a saga host could not do (a deadline), naming the saga log.
            letter("saga.events", 3, 10, b'{"sagaId": "s-1"}'),
        ):
            publisher.publish_raw(SAGA_DLQ, "s-1", codec.encode(item), partition=3)
        publisher.flush()

    code, out, err = cli(kafka, capsys, "dlq", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["3:0", "3:1", "3:2", "3:3"]
    assert rows[0]["topic"] == "payment.commands.process" and rows[0]["attempts"] == 5
    code, out, _ = cli(kafka, capsys, "dlq", "list", "--topic", "user.commands.verify")
    assert "3:1" in out and "3:0" not in out and "db down" in out

    code, out, _ = cli(kafka, capsys, "dlq", "show", "3:0", "--json")
    shown = json.loads(out)
    assert (
        shown["payload"] == '{"hello": "again"}' and shown["payloadEncoding"] == "utf-8"
    )
    code, out, _ = cli(kafka, capsys, "dlq", "show", "3:1", "--json")
    assert json.loads(out)["payloadEncoding"] == "base64"

    code, out, _ = cli(
        kafka,
        capsys,
        "dlq",
        "replay",
        "--all",
        "--dry-run",
        "--topic",
        "user.commands.verify",
    )
    assert code == 0 and "would send 3:1 -> user.commands.verify partition 3" in out
    code, out, _ = cli(kafka, capsys, "dlq", "replay", "3:0")
    assert code == 0 and "sent 3:0 -> payment.commands.process partition 3" in out
    back = list(read_to_end(kafka, {TP("payment.commands.process", 3): 0}))
    assert [(r.key, r.value) for r in back] == [(b"s-1", b'{"hello": "again"}')]
    assert list(read_to_end(kafka, {TP("user.commands.verify", 3): 0})) == []

    code, _, err = cli(kafka, capsys, "dlq", "replay", "3:2")
    assert code == 1 and "kept only part of an oversized original" in err
    code, _, err = cli(kafka, capsys, "dlq", "replay", "3:3")
    assert code == 1 and "name a log topic" in err
    assert list(read_to_end(kafka, {TP("saga.events", 3): 0})) == []
    code, _, err = cli(kafka, capsys, "dlq", "replay")
    assert code == 2 and "one PARTITION:OFFSET or --all" in err
    code, _, err = cli(kafka, capsys, "dlq", "show", "nonsense")
    assert code == 1 and "must be PARTITION:OFFSET" in err
