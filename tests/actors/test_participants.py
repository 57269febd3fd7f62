"""Participant services: domain rules, idempotent effects, retries and dead letters.

Domain rules run in-process on real DuckDB files; the command service runs on
a real broker of its own, with its own consumer group.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import TopicPartition

from actors.participants import AccountService, PaymentService, UserService, serve
from events.dead_letters import DeadLetter, DeadLetterCodec
from events.messages import CommandMessage, EventMessage, MessageCodec
from events.publisher import KafkaMessagePublisher
from events.reader import read_to_end
from events.service import CommandService, RetrySettings
from events.settings import ConsumerSettings, KafkaSettings
from events.topics import SAGA_DLQ
from tests.conftest import private_kafka

PARTITIONS = 2
CODEC = MessageCodec()


def command(
    saga_id: str, step: str, service: str, attempt: int = 1, **payload: Any
) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga_id}:{step}:{attempt}",
        saga_id=saga_id,
        step_id=step,
        timestamp=datetime.now(UTC),
        target_service=service,
        payload=payload,
        metadata={"idempotencyKey": f"{saga_id}:{step}", "attempt": str(attempt)},
    )


def pay(
    saga_id: str, user: str = "u-1", amount: int = 100, attempt: int = 1
) -> CommandMessage:
    return command(
        saga_id,
        "process_payment",
        "payment",
        attempt,
        userId=user,
        amount=amount,
        currency="USD",
    )


def test_payment_rules_and_one_effect_per_step(tmp_path: Path) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500), "u-2": (50, 500)})
    replies = payments.handle(
        [
            pay("s-1"),
            pay("s-2", amount=600),  # over the limit
            pay("s-3", user="u-2"),  # insufficient funds
            pay("s-4", user="nobody"),
            pay("s-1", attempt=2),  # attempt 2 of s-1's step: the same effect
        ]
    )
    assert [r.success for r in replies] == [True, False, False, False, True]
    assert "over the limit" in (replies[1].error or "")
    assert replies[2].error == "insufficient funds"
    assert replies[4] == replies[0]
    again = payments.handle([pay("s-1")])  # a redelivery, later
    assert again == [replies[0]]
    refund = command(
        "s-1", "process_payment.compensate", "payment", paymentId="pay-s-1"
    )
    [refunded] = payments.handle([refund])
    assert refunded.success and refunded.payload["refunded"] == 100
    assert payments.handle([refund]) == [refunded]
    # A refund for a payment that never happened (its command timed out on the
    # way): nothing to give back, and the late payment is then refused.
    [nothing] = payments.handle(
        [command("s-9", "process_payment.compensate", "payment", sagaId="s-9")]
    )
    assert nothing.success and nothing.payload["refunded"] == 0
    [late] = payments.handle([pay("s-9")])
    assert not late.success and "rolled back" in (late.error or "")
    payments.close()
    # State and effects are on disk: a new instance sees them.
    reopened = PaymentService(tmp_path / "payment.duckdb")
    assert reopened.wallets["u-1"][0] == 1_000
    rows = reopened.db.execute(
        "SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM refunds)"
    ).fetchone()
    assert rows == (1, 2)  # the refund of s-1, and s-9's marker
    reopened.close()


def test_user_and_account_rules(tmp_path: Path) -> None:
    users = UserService(tmp_path / "user.duckdb")
    users.seed({"u-ok": "verified", "u-bad": "blocked"})
    verified = users.handle(
        [
            command(f"s-{u}", "verify_user", "user", userId=u)
            for u in ("u-ok", "u-bad", "u-x")
        ]
    )
    assert [r.success for r in verified] == [True, False, False]
    assert verified[1].error == "user is blocked: u-bad"
    assert verified[2].error == "unknown user: u-x"
    accounts = AccountService(tmp_path / "account.duckdb")
    accounts.seed({"a-open": "open", "a-closed": "closed"})
    deposited = accounts.handle(
        [
            command("s-1", "deposit", "account", accountId="a-open", amount=70),
            command("s-2", "deposit", "account", accountId="a-closed", amount=70),
            command("s-3", "deposit", "account", accountId="a-open", amount=30),
        ]
    )
    assert [r.success for r in deposited] == [True, False, True]
    assert deposited[2].payload["balance"] == 100
    users.close()
    accounts.close()


# ---------------------------------------------------------------------------
# Over Kafka.


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    consumer = msgspec.structs.replace(
        ConsumerSettings(), session_timeout_ms=6_000, heartbeat_interval_ms=2_000
    )
    with private_kafka(PARTITIONS, max_message_bytes=20_000, consumer=consumer) as s:
        yield s


def read(kafka: KafkaSettings, topic: str) -> list[bytes]:
    starts = {TopicPartition(topic, p): 0 for p in range(PARTITIONS)}
    return [r.value for r in read_to_end(kafka, starts)]


def replies(kafka: KafkaSettings, topic: str) -> list[EventMessage]:
    return [
        m
        for m in (CODEC.decode(v) for v in read(kafka, topic))
        if isinstance(m, EventMessage)
    ]


def letters(kafka: KafkaSettings) -> list[DeadLetter]:
    codec = DeadLetterCodec()
    return [codec.decode(v) for v in read(kafka, SAGA_DLQ)]


def drive(service: CommandService, until: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        service.poll_once()


def test_the_same_command_twice_applies_once_and_answers_twice_alike(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500)})
    with KafkaMessagePublisher(kafka) as publisher:
        for _ in range(2):
            publisher.publish("payment.commands.process", pay("s-1"))
        publisher.flush()
    with serve(kafka, payments) as service:
        drive(service, lambda: service.stats().replies == 2)
    answers = replies(kafka, "payment.events.process")
    assert len(answers) == 2 and answers[0] == answers[1] and answers[0].success
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
    payments.close()


def test_redelivery_after_a_consumer_killed_before_committing(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "payment.duckdb"
    seeded = PaymentService(path)
    seeded.seed({"u-1": (1_000, 500)})
    seeded.close()
    with KafkaMessagePublisher(kafka) as publisher:
        publisher.publish("payment.commands.process", pay("s-1"))
        publisher.flush()
    settings = msgspec.json.encode(kafka).decode()
    # A service process that dies right after its DuckDB transaction commits:
    # the effect is in, the reply unsent, the offset uncommitted.
    script = textwrap.dedent(
        f"""
        import os, signal, msgspec
        from actors.participants import PaymentService, serve
        from events.settings import ConsumerSettings, KafkaSettings
        kafka = msgspec.json.decode({settings!r}, type=KafkaSettings)
        payments = PaymentService({str(path)!r})
        handle = payments.handle
        def handle_then_die(commands):
            handle(commands)
            os.kill(os.getpid(), signal.SIGKILL)
        payments.handle = handle_then_die
        service = serve(kafka, payments)
        while True:
            service.poll_once()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    payments = PaymentService(path)
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
    assert replies(kafka, "payment.events.process") == []
    with serve(kafka, payments) as service:  # the same group: a redelivery
        drive(service, lambda: service.stats().replies == 1)
    [answer] = replies(kafka, "payment.events.process")
    assert answer.success and answer.payload["paymentId"] == "pay-s-1"
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
    assert payments.wallets["u-1"][0] == 900
    payments.close()


def test_poison_messages_are_dead_lettered_and_the_rest_processed(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500)})
    topic = "payment.commands.process"
    with KafkaMessagePublisher(kafka) as publisher:
        publisher.publish_raw(topic, "s-x", b"{not json", partition=0)
        publisher.publish_raw(
            topic, "s-x", b'{"type": "command", "sagaId": 5}', partition=0
        )
        publisher.publish_raw(topic, "s-x", b"x" * 30_000, partition=0)
        publisher.publish(topic, pay("s-ok"), partition=0)
        publisher.flush()
    with serve(kafka, payments) as service:
        drive(service, lambda: service.stats().handled == 4)
    dead = letters(kafka)
    assert len(dead) == 3
    assert [d.offset for d in dead] == [0, 1, 2]
    assert "not JSON" in dead[0].error
    assert "sagaId" in dead[1].error
    assert "30000" in dead[2].error and dead[2].payload_size == 30_000
    assert len(dead[2].payload) == kafka.max_message_bytes // 2
    [answer] = replies(kafka, "payment.events.process")
    assert answer.saga_id == "s-ok" and answer.success
    payments.close()


def test_a_failing_handler_is_retried_then_dead_lettered(kafka: KafkaSettings) -> None:
    failures: dict[str, int] = {}
    waits: list[float] = []

    def flaky(commands: list[CommandMessage]) -> list[EventMessage]:
        for c in commands:
            failures[c.saga_id] = failures.get(c.saga_id, 0) + 1
            if c.saga_id == "always" or (
                c.saga_id == "twice" and failures[c.saga_id] <= 2
            ):
                raise RuntimeError(f"transient fault for {c.saga_id}")
        return [
            EventMessage(
                message_id=f"{c.message_id}:reply",
                saga_id=c.saga_id,
                step_id=c.step_id,
                timestamp=datetime.now(UTC),
                success=True,
            )
            for c in commands
        ]

    topic = "user.commands.verify"
    with KafkaMessagePublisher(kafka) as publisher:
        for saga in ("twice", "always", "fine"):
            publisher.publish(topic, command(saga, "verify_user", "user"), partition=0)
        publisher.flush()
    retry = RetrySettings(max_attempts=4, initial_backoff_ms=10)
    with CommandService(
        kafka, "flaky", [topic], flaky, group_id=f"g-{uuid.uuid4().hex[:6]}",
        retry=retry, sleep=waits.append,
    ) as service:  # fmt: skip
        drive(service, lambda: service.stats().handled == 3)
        stats = service.stats()
    [dead] = letters(kafka)
    assert dead.saga_id == "always" and dead.attempts == 4
    assert "transient fault for always" in dead.error
    assert {r.saga_id for r in replies(kafka, "user.events.verify")} == {
        "twice",
        "fine",
    }
    # The batch 3 more times, then "always" alone 3 more ("twice" had healed).
    assert stats.retries == 3 + 3
    assert len(waits) == 6 and all(0 < w <= 0.08 for w in waits)
