"""Participant services: domain rules, idempotent effects, retries and dead letters.

Domain rules run in-process on real DuckDB files; the command service runs on
a real broker of its own, with its own consumer group.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.participants import AccountService, PaymentService, UserService, serve
from events.errors import ServiceUnavailableError
from events.service import CommandService, RetrySettings
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import ConsumerSettings, KafkaSettings
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import ALL_TOPICS, SAGA_EVENTS
from tests.conftest import private_kafka, process_state, settings_for
from tests.reading import letters, read, replies

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
        from events.transport.settings import ConsumerSettings, KafkaSettings
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


# ---------------------------------------------------------------------------
# Refusals, natural keys, and the infrastructure failing underneath.


def refund(saga_id: str, attempt: int) -> CommandMessage:
    return command(
        saga_id,
        "process_payment.compensate",
        "payment",
        attempt,
        paymentId=f"pay-{saga_id}",
    )


def test_a_refused_refund_is_decided_afresh_but_a_refused_payment_stays(
    tmp_path: Path,
) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500)})
    [paid] = payments.handle([pay("s-1")])
    assert paid.success and paid.command_id == "s-1:process_payment:1"
    # The wallet is closed between the payment and its refund: nowhere to
    # put the money back, so the refund is refused for now.
    payments.db.execute("DELETE FROM wallets WHERE user_id = 'u-1'")
    payments.load()
    [refused] = payments.handle([refund("s-1", 1)])
    assert not refused.success and "no wallet for user u-1" in (refused.error or "")
    [again] = payments.handle([refund("s-1", 2)])  # decided afresh: still refused
    assert not again.success and again.message_id != refused.message_id
    payments.seed({"u-1": (1_000, 500)})  # the wallet is back
    [healed] = payments.handle([refund("s-1", 3)])
    assert healed.success and healed.payload["refunded"] == 100
    assert healed.message_id == "s-1:process_payment.compensate:3:reply"
    assert healed.command_id == "s-1:process_payment.compensate:3"
    # A success is recorded: attempt 4 gets it as stored, attempt 3's reply.
    assert payments.handle([refund("s-1", 4)]) == [healed]
    assert payments.wallets["u-1"][0] == 1_100
    # A refused forward command stays refused, with the reply of its first
    # attempt, even after the reason went away: no payment for a saga that
    # was told no.
    [poor] = payments.handle([pay("s-2", user="u-3")])
    assert not poor.success and "no wallet for user u-3" in (poor.error or "")
    payments.seed({"u-3": (1_000, 500)})
    assert payments.handle([pay("s-2", user="u-3", attempt=2)]) == [poor]
    rows = payments.db.execute(
        "SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM refunds)"
    ).fetchone()
    assert rows == (1, 1)
    payments.close()


def test_late_duplicates_past_idempotency_retention_apply_nothing(
    tmp_path: Path,
) -> None:
    now = [1_700_000_000.0]
    past_retention = 8 * 24 * 3600  # the records are kept 7 days

    def clock() -> float:
        return now[0]

    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    payments.seed({"u-1": (1_000, 500)})
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    accounts.seed({"a-1": "open"})
    [paid] = payments.handle([pay("s-1")])
    deposit = command("s-1", "deposit", "account", accountId="a-1", amount=100)
    [deposited] = accounts.handle([deposit])
    assert paid.success and deposited.success
    now[0] += past_retention
    assert payments.idempotency.cleanup() == 1
    assert accounts.idempotency.cleanup() == 1
    # The same commands again, as a dead-letter replay would send them.
    [late_payment] = payments.handle([pay("s-1")])
    assert late_payment.success and late_payment.payload == paid.payload
    [late_deposit] = accounts.handle([deposit])
    assert late_deposit.success and late_deposit.payload["alreadyDeposited"]
    assert late_deposit.payload["accountId"] == "a-1"
    # Twice in one batch, with a new attempt number: still one effect.
    assert all(r.success for r in payments.handle([pay("s-2"), pay("s-2", 2)]))
    payments.close()
    accounts.close()
    # The natural keys come from the tables: a restarted service keeps them.
    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    now[0] += past_retention
    payments.idempotency.cleanup()
    accounts.idempotency.cleanup()
    assert payments.handle([pay("s-1", attempt=3)])[0].success
    assert accounts.handle([deposit])[0].success
    assert payments.db.execute(
        "SELECT payment_id, count(*) FROM payments GROUP BY ALL ORDER BY 1"
    ).fetchall() == [("pay-s-1", 1), ("pay-s-2", 1)]
    assert payments.db.execute("SELECT balance FROM wallets").fetchone() == (800,)
    assert accounts.db.execute("SELECT count(*) FROM deposits").fetchone() == (1,)
    assert accounts.db.execute("SELECT balance FROM accounts").fetchone() == (100,)
    payments.close()
    accounts.close()


def test_a_database_that_cannot_write_pauses_the_service_without_dead_letters(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "payment.duckdb"
    payments = PaymentService(path)
    payments.seed({"u-1": (1_000, 500)})
    # DuckDB writes a commit to <file>.wal, created afresh after a checkpoint;
    # a directory in its place makes every commit fail with a real I/O error.
    payments.db.execute("CHECKPOINT")
    wal = Path(f"{path}.wal")
    assert not wal.exists()
    wal.mkdir()
    with pytest.raises(ServiceUnavailableError, match="Is a directory"):
        payments.handle([pay("s-0")])
    assert payments.wallets["u-1"][0] == 1_000  # nothing applied
    commands = [pay(f"s-{i}", amount=10) for i in range(1, 6)]
    with KafkaMessagePublisher(kafka) as publisher:
        for c in commands:
            publisher.publish("payment.commands.process", c)
        publisher.flush()
    retry = RetrySettings(unavailable_initial_ms=50, unavailable_max_ms=200)
    with serve(kafka, payments, retry=retry) as service:
        drive(service, lambda: service.stats().unavailable >= 3)
        assert service.stats().breaker_open
        assert service.stats().dead_letters == 0 and service.stats().replies == 0
        wal.rmdir()  # the disk is back
        drive(service, lambda: service.stats().replies == len(commands))
        stats = service.stats()
    assert not stats.breaker_open and stats.dead_letters == 0
    assert letters(kafka) == []
    answers = replies(kafka, "payment.events.process")
    assert sorted(a.command_id or "" for a in answers) == sorted(
        c.message_id for c in commands
    )
    assert all(a.success for a in answers)
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (5,)
    assert payments.wallets["u-1"][0] == 950
    payments.close()


def paused_kafka(broker: EmbeddedBroker) -> KafkaSettings:
    """Short producer timeouts, so sends to a paused broker fail in seconds."""
    base = settings_for(
        broker.bootstrap,
        request_timeout_ms=1_000,
        delivery_timeout_ms=2_000,
        max_block_ms=2_000,
    )
    consumer = msgspec.structs.replace(
        ConsumerSettings(), session_timeout_ms=6_000, heartbeat_interval_ms=2_000
    )
    return msgspec.structs.replace(
        base,
        connect_timeout_ms=2_000,
        topics=msgspec.structs.replace(base.topics, partitions=PARTITIONS),
        consumer=consumer,
    )


def test_replies_lost_while_the_broker_is_paused_are_sent_before_commits(
    tmp_path: Path,
) -> None:
    topic = "payment.commands.process"
    forged = msgspec.structs.replace(
        pay("forged"), metadata={"replyTopic": SAGA_EVENTS}
    )
    # A first round, so the producer knows the reply topic and saga.dlq: the
    # sends to the paused broker are then queued and fail by delivery timeout.
    warm = [pay("warm"), msgspec.structs.replace(forged, message_id="forged:0")]
    batch = [*(pay(f"s-{i}", amount=10) for i in range(20)), forged]
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (100_000, 500)})
    handle = payments.handle
    states: list[str] = []
    resumes: list[threading.Timer] = []
    handled_s0 = [0]
    running: list[CommandService] = []
    with EmbeddedBroker() as broker:

        def resume_after_two_attempts() -> None:
            deadline = time.monotonic() + 60
            while running[0].stats().failed_sends < 2 * len(batch):
                if time.monotonic() > deadline:
                    break  # the assertions below say what went wrong
                time.sleep(0.05)
            broker.resume()

        def handle_then_pause(commands: list[CommandMessage]) -> list[EventMessage]:
            answers = handle(commands)
            handled_s0[0] += sum(c.saga_id == "s-0" for c in commands)
            if not states and handled_s0[0]:
                # The effects are committed; now the replies can't get out.
                # Paused until both of the service's sends have failed (a
                # flush bounded by the 2 s delivery timeout plus 5 s, a new
                # producer by the 2 s connect timeout): the batch is put back.
                # Resumed on that event, not after a guessed time.
                broker.pause()
                states.append(process_state(broker.pid))
                resumes.append(threading.Thread(target=resume_after_two_attempts))
                resumes[0].start()
            return answers

        payments.handle = handle_then_pause  # type: ignore[method-assign]
        kafka = paused_kafka(broker)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
        retry = RetrySettings(initial_backoff_ms=200, send_attempts=2)
        with (
            KafkaMessagePublisher(kafka) as publisher,
            serve(kafka, payments, retry=retry) as service,
        ):
            running.append(service)
            for c in warm:
                publisher.publish(topic, c)
            publisher.flush()
            drive(service, lambda: service.stats().handled == len(warm))
            for c in batch:
                publisher.publish(topic, c)
            publisher.flush()
            wanted = {c.message_id for c in batch}

            def all_answered() -> bool:
                # The independent reader runs only once the service says so.
                if service.stats().handled < len(warm) + len(batch):
                    return False
                answers = replies(kafka, "payment.events.process")
                got = {a.command_id for a in answers}
                got |= {d.message_id for d in letters(kafka)}
                return wanted <= got

            try:
                drive(service, all_answered, timeout_s=120)
            finally:
                for timer in resumes:
                    timer.join()
            stats = service.stats()
        assert states == ["T"]  # the broker really was stopped
        assert stats.failed_sends >= 2 * len(batch) and stats.producer_rebuilds > 0
        assert handled_s0[0] >= 2  # put back, redelivered, answered as stored
        dead = [d for d in letters(kafka) if d.message_id == forged.message_id]
        assert dead and "saga.events" in dead[0].error
        assert read(kafka, SAGA_EVENTS) == []
    # Redelivered commands got their stored replies: each effect applied once.
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (21,)
    assert payments.wallets["u-1"][0] == 100_000 - 100 - 20 * 10
    payments.close()
