"""Participant services over Kafka: idempotent effects, redelivery after a
kill, poison and retries dead-lettered, a database or a broker failing
underneath. Each runs the command service on a real broker of its own, with
its own consumer group.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.participants import PaymentService, serve
from events.errors import ServiceUnavailableError
from events.service import CommandService, RetrySettings
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import SAGA_EVENTS
from tests.actors.participants.messages import command, pay
from tests.conftest import QUICK_GROUP, private_broker, process_state
from tests.reading import letters, read, replies

PARTITIONS = 2
CODEC = MessageCodec()
#: Short producer timeouts, so sends to a paused broker fail in seconds.
SHORT_SENDS = {
    "request_timeout_ms": 1_000,
    "delivery_timeout_ms": 2_000,
    "max_block_ms": 2_000,
}


def drive(service: CommandService, until: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        service.poll_once()


def test_the_same_command_twice_applies_once_and_answers_twice_alike(
    service_kafka: KafkaSettings, tmp_path: Path
) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500)})
    with KafkaMessagePublisher(service_kafka) as publisher:
        for _ in range(2):
            publisher.publish("payment.commands.process", pay("s-1"))
        publisher.flush()
    with serve(service_kafka, payments) as service:
        drive(service, lambda: service.stats().replies == 2)
    answers = replies(service_kafka, "payment.events.process")
    assert len(answers) == 2 and answers[0] == answers[1] and answers[0].success
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
    payments.close()


def test_redelivery_after_a_consumer_killed_before_committing(
    service_kafka: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "payment.duckdb"
    seeded = PaymentService(path)
    seeded.seed({"u-1": (1_000, 500)})
    seeded.close()
    with KafkaMessagePublisher(service_kafka) as publisher:
        publisher.publish("payment.commands.process", pay("s-1"))
        publisher.flush()
    settings = msgspec.json.encode(service_kafka).decode()
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
    assert replies(service_kafka, "payment.events.process") == []
    with serve(service_kafka, payments) as service:  # the same group: a redelivery
        drive(service, lambda: service.stats().replies == 1)
    [answer] = replies(service_kafka, "payment.events.process")
    assert answer.success and answer.payload["paymentId"] == "pay-s-1"
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (1,)
    assert payments.wallets["u-1"][0] == 900
    payments.close()


def test_poison_messages_are_dead_lettered_and_the_rest_processed(
    service_kafka: KafkaSettings, tmp_path: Path
) -> None:
    # A message limit that the 30 kB poison below is over.
    kafka = msgspec.structs.replace(service_kafka, max_message_bytes=20_000)
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


def test_a_failing_handler_is_retried_then_dead_lettered(
    service_kafka: KafkaSettings,
) -> None:
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
    with KafkaMessagePublisher(service_kafka) as publisher:
        for saga in ("twice", "always", "fine"):
            publisher.publish(topic, command(saga, "verify_user", "user"), partition=0)
        publisher.flush()
    retry = RetrySettings(max_attempts=4, initial_backoff_ms=10)
    with CommandService(
        service_kafka, "flaky", [topic], flaky, group_id=f"g-{uuid.uuid4().hex[:6]}",
        retry=retry, sleep=waits.append,
    ) as service:  # fmt: skip
        drive(service, lambda: service.stats().handled == 3)
        stats = service.stats()
    [dead] = letters(service_kafka)
    assert dead.saga_id == "always" and dead.attempts == 4
    assert "transient fault for always" in dead.error
    assert {r.saga_id for r in replies(service_kafka, "user.events.verify")} == {
        "twice",
        "fine",
    }
    # The batch 3 more times, then "always" alone 3 more ("twice" had healed).
    assert stats.retries == 3 + 3
    assert len(waits) == 6 and all(0 < w <= 0.08 for w in waits)


def test_a_database_that_cannot_write_pauses_the_service_without_dead_letters(
    service_kafka: KafkaSettings, tmp_path: Path
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
    with KafkaMessagePublisher(service_kafka) as publisher:
        for c in commands:
            publisher.publish("payment.commands.process", c)
        publisher.flush()
    retry = RetrySettings(unavailable_initial_ms=50, unavailable_max_ms=200)
    with serve(service_kafka, payments, retry=retry) as service:
        drive(service, lambda: service.stats().unavailable >= 3)
        assert service.stats().breaker_open
        assert service.stats().dead_letters == 0 and service.stats().replies == 0
        wal.rmdir()  # the disk is back
        drive(service, lambda: service.stats().replies == len(commands))
        stats = service.stats()
    assert not stats.breaker_open and stats.dead_letters == 0
    assert letters(service_kafka) == []
    answers = replies(service_kafka, "payment.events.process")
    assert sorted(a.command_id or "" for a in answers) == sorted(
        c.message_id for c in commands
    )
    assert all(a.success for a in answers)
    assert payments.db.execute("SELECT count(*) FROM payments").fetchone() == (5,)
    assert payments.wallets["u-1"][0] == 950
    payments.close()


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
    with private_broker(
        PARTITIONS,
        producer=SHORT_SENDS,
        connect_timeout_ms=2_000,
        consumer=QUICK_GROUP,
    ) as (broker, kafka):

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
