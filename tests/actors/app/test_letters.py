"""A dry run of a letter's replay: a participant's command goes back to its
service, outside the engine, so the dry run says where it goes and whether its
saga still waits on it; it is never decided as if it were a reply."""

from __future__ import annotations

from datetime import UTC, datetime

from actors.app.letters import Plan, rehearsed
from actors.core import DEFINITIONS
from events.transport.dlq import Entry
from events.wire.dead_letters import DeadLetter
from events.wire.messages import MessageCodec
from tests.actors.core.sagas import Run, reply_to

CODEC = MessageCodec()


def service_letter(payload: bytes, saga_id: str = "s-1") -> Entry:
    letter = DeadLetter(
        topic="payment.commands.process",
        partition=0,
        offset=7,
        error="handler failed 5 times, last: RuntimeError('db down')",
        dead_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        source="payment-service",
        payload=payload,
        payload_size=len(payload),
        key=saga_id,
        saga_id=saga_id,
        attempts=5,
    )
    return Entry(partition=0, offset=7, letter=letter)


def dry_run(entry: Entry, run: Run) -> tuple[str, str, str, str]:
    plan = Plan(entry, run.records(), release=None)
    [outcome] = rehearsed([plan], DEFINITIONS, CODEC, None, now=9_000)
    return outcome.verdict, outcome.status_before, outcome.step_before, outcome.reason


def test_a_command_the_saga_waits_on_goes_back_to_its_service() -> None:
    run = Run()
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], now=1_100, userId="u-1"))
    payment = run.sent[-1]  # the saga now waits on process_payment, attempt 1
    assert payment.topic == "payment.commands.process"
    entry = service_letter(CODEC.encode(payment.message))
    verdict, status, step, reason = dry_run(entry, run)
    assert (verdict, status, step) == ("resent", "running", "process_payment")
    assert reason.startswith("to the payment service on payment.commands.process;")
    assert "saga s-1 waits on this command" in reason
    assert "takes replies" not in reason  # it was once decided as a reply


def test_a_command_its_saga_gave_up_on_is_named_as_such() -> None:
    run = Run()
    run.start(now=1_000)
    verify = run.sent[-1]
    run.feed(reply_to(verify, now=1_100, success=False))  # rejected: ended
    entry = service_letter(CODEC.encode(verify.message))
    verdict, status, _, reason = dry_run(entry, run)
    assert (verdict, status) == ("resent", "rejected")
    assert "no longer waits on it (rejected" in reason
    assert "idempotency record" in reason


def test_a_command_for_no_saga_in_the_log_and_one_that_does_not_decode() -> None:
    elsewhere = Run(saga_id="s-2")  # its log is not the one read
    elsewhere.start(now=1_000)
    entry = service_letter(CODEC.encode(elsewhere.sent[-1].message), saga_id="s-2")
    verdict, status, _, reason = dry_run(entry, Run(saga_id="s-2"))
    assert (verdict, status) == ("resent", "")
    assert "the log has no saga s-2: nothing waits on its answer" in reason
    verdict, _, _, reason = dry_run(service_letter(b'{"x": [[[1]]]'), Run())
    assert verdict == "resent"
    assert reason.startswith(
        "to the payment service on payment.commands.process, which would "
        "dead-letter it again: "
    )
