"""The pure saga core: deposit saga scenarios, and properties of random runs."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core import (
    TERMINAL_EVENTS,
    Action,
    CompensationCommanded,
    Reply,
    RetryPolicy,
    SagaDefinition,
    SagaState,
    Status,
    Step,
    StepCommanded,
    Tick,
    Verdict,
    decide,
    fold,
    pending_command,
)
from tests.actors.core.sagas import Run, reply_to


def types(run: Run) -> list[str]:
    return [type(e).__name__ for r in run.records() for e in r.events]


def test_happy_path_commands_each_step_in_order_and_completes() -> None:
    run = Run()
    run.start(now=1_000)
    assert [s.topic for s in run.sent] == ["user.commands.verify"]
    run.feed(reply_to(run.sent[-1], 1_010))
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-9"))
    deposit = run.sent[-1]
    assert deposit.topic == "account.commands.deposit"
    assert deposit.message.payload == {
        "accountId": "a-1",
        "amount": 250,
        "currency": "USD",
        "paymentId": "p-9",
    }
    assert deposit.message.message_id == "s-1:deposit:1"
    run.feed(reply_to(deposit, 1_030))
    assert run.state is not None and run.state.status is Status.COMPLETED
    assert types(run)[-1] == "SagaCompleted"


def test_failed_deposit_refunds_the_payment_and_ends_compensated() -> None:
    run = Run()
    run.start()
    run.feed(reply_to(run.sent[-1], 1_010))
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-9"))
    run.feed(reply_to(run.sent[-1], 1_030, success=False))
    refund = run.sent[-1]
    assert refund.topic == "payment.commands.refund"
    assert refund.message.step_id == "process_payment.compensate"
    assert refund.message.payload["sagaId"] == "s-1"
    run.feed(reply_to(refund, 1_040))
    assert run.state is not None and run.state.status is Status.COMPENSATED
    assert run.state.compensated == ("process_payment",)


def test_failed_verification_is_rejected_with_nothing_to_undo() -> None:
    run = Run()
    run.start()
    run.feed(reply_to(run.sent[-1], 1_010, success=False))
    assert run.state is not None and run.state.status is Status.REJECTED
    assert "verify_user" in run.state.reason
    assert len(run.sent) == 1


def test_timeout_retries_with_backoff_then_the_late_reply_still_counts() -> None:
    run = Run()
    run.start(now=0)
    first = run.sent[-1]
    run.feed(Tick(saga_id="s-1", now=9_999))
    assert len(run.sent) == 1, "nothing is due before the deadline"
    run.feed(Tick(saga_id="s-1", now=10_000, jitter=0.0))
    assert run.state is not None and run.state.retrying
    assert run.state.deadline == 10_500  # initial backoff 500 ms, no jitter drawn
    run.feed(Tick(saga_id="s-1", now=10_500))
    assert run.sent[-1].message.message_id == "s-1:verify_user:2"
    assert run.sent[-1].message.metadata["idempotencyKey"] == "s-1:verify_user"
    run.feed(reply_to(first, 10_600))  # attempt 1's answer, late: still the answer
    assert run.sent[-1].topic == "payment.commands.process"


def test_a_step_without_compensation_is_asked_until_it_answers() -> None:
    """Giving up on it would leave an effect nobody can undo: its command goes
    out again past max_attempts, at the policy's capped backoff."""
    run = Run()
    run.start(now=0)
    now = 0
    for _ in range(10):
        now += 60_000
        run.feed(Tick(saga_id="s-1", now=now))
    assert run.state is not None and run.state.status is Status.RUNNING
    assert [s.message.message_id for s in run.sent] == [
        f"s-1:verify_user:{n}" for n in range(1, 7)
    ]
    doubts = [e for r in run.records() for e in r.events if getattr(e, "in_doubt", 0)]
    assert [e.attempt for e in doubts] == [3, 4, 5]
    run.feed(reply_to(run.sent[0], now + 1))  # attempt 1's answer, at last
    assert run.sent[-1].topic == "payment.commands.process"


def _to_the_deposit(run: Run) -> None:
    run.start(now=0)
    run.feed(reply_to(run.sent[-1], 10))
    run.feed(reply_to(run.sent[-1], 20, paymentId="p-9"))
    assert run.sent[-1].topic == "account.commands.deposit"


def _tick_until(run: Run, now: int, count: int) -> int:
    for _ in range(count):
        now += 60_000
        run.feed(Tick(saga_id="s-1", now=now, jitter=0.5))
    return now


def test_a_deposit_in_doubt_is_never_refunded_around() -> None:
    """H1: the deposit (the pivot) unanswered past its last attempt is sent
    again, never compensated past; its late success completes the saga."""
    run = Run()
    _to_the_deposit(run)
    now = _tick_until(run, 20, 12)
    assert run.state is not None and run.state.status is Status.RUNNING
    assert {s.topic for s in run.sent[2:]} == {"account.commands.deposit"}
    assert run.state.attempt > 3 and not run.state.doubtful
    run.feed(reply_to(run.sent[2], now + 5))  # attempt 1 landed late
    assert run.state.status is Status.COMPLETED
    assert not any(s.topic == "payment.commands.refund" for s in run.sent)


def test_a_deposit_refused_after_doubt_refunds_the_payment() -> None:
    run = Run()
    _to_the_deposit(run)
    now = _tick_until(run, 20, 8)
    run.feed(reply_to(run.sent[-1], now + 5, success=False))
    assert run.state is not None and run.state.status is Status.COMPENSATING
    refund = run.sent[-1]
    assert refund.topic == "payment.commands.refund"
    run.feed(reply_to(refund, now + 10))
    assert run.state.status is Status.COMPENSATED


def test_a_compensation_unanswered_is_asked_until_it_answers() -> None:
    run = Run()
    _to_the_deposit(run)
    run.feed(reply_to(run.sent[-1], 30, success=False))
    now = _tick_until(run, 30, 12)
    assert run.state is not None and run.state.status is Status.COMPENSATING
    refunds = [s for s in run.sent if s.topic == "payment.commands.refund"]
    assert len(refunds) > 3
    run.feed(reply_to(refunds[-1], now + 5))
    assert run.state.status is Status.COMPENSATED


def test_a_late_success_of_a_step_given_up_in_doubt_is_reported() -> None:
    """The payment went unanswered and was refunded by sagaId; its success
    arriving afterwards is neither applied nor dropped: it is LATE."""
    run = Run()
    run.start(now=0)
    run.feed(reply_to(run.sent[-1], 10))
    payment = run.sent[-1]
    now = 10
    while run.sent[-1].topic == "payment.commands.process":
        now += 60_000
        run.feed(Tick(saga_id="s-1", now=now))
    run.feed(reply_to(run.sent[-1], now + 1))  # the refund
    assert run.state is not None and run.state.status is Status.COMPENSATED
    late = run.feed(reply_to(payment, now + 2, paymentId="p-1"))
    assert late.verdict is Verdict.LATE and not late.events
    assert "process_payment" in late.reason and "in doubt" in late.reason
    refused = run.feed(reply_to(payment, now + 3, success=False))
    assert refused.verdict is Verdict.DUPLICATE


def test_a_reply_names_a_command_the_saga_sent() -> None:
    run = Run()
    run.start(now=0)
    run.feed(Tick(saga_id="s-1", now=10_000))
    run.feed(Tick(saga_id="s-1", now=20_000))
    assert run.sent[-1].message.message_id == "s-1:verify_user:2"

    def answer(command_id: str) -> Reply:
        reply = reply_to(run.sent[-1], 20_001)
        return msgspec.structs.replace(
            reply, command_id=command_id, message_id=f"r-{command_id}"
        )

    for forged in ("s-1:verify_user:3", "s-1:process_payment:1", "s-2:verify_user:1"):
        decision = run.feed(answer(forged))
        assert decision.verdict is Verdict.UNEXPECTED, forged
        assert "never sent" in decision.reason
    # An older attempt's answer is the step's answer: one idempotency key.
    assert run.feed(answer("s-1:verify_user:1")).verdict is Verdict.APPLIED
    assert run.sent[-1].topic == "payment.commands.process"


def test_refund_refused_until_retries_run_out_fails_the_saga() -> None:
    run = Run()
    run.start()
    run.feed(reply_to(run.sent[-1], 1_010))
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-9"))
    run.feed(reply_to(run.sent[-1], 1_030, success=False))
    now = 1_030
    while run.state is not None and not run.state.status.terminal:
        now += 60_000
        if run.state.retrying:
            run.feed(Tick(saga_id="s-1", now=now))
        else:
            run.feed(reply_to(run.sent[-1], now, success=False))
    assert run.state.status is Status.FAILED
    assert "refused after 3 attempt(s)" in run.state.reason


def test_duplicate_and_stray_replies() -> None:
    run = Run()
    run.start()
    verify = run.sent[-1]
    run.feed(reply_to(verify, 1_010))
    again = run.feed(reply_to(verify, 1_011))
    assert again.verdict is Verdict.DUPLICATE and not again.events
    future = Reply(
        saga_id="s-1",
        topic="account.events.deposit",
        step_id="deposit",
        message_id="x",
        success=True,
        payload={},
        error=None,
        now=1_012,
    )
    assert run.feed(future).verdict is Verdict.UNEXPECTED
    wrong_topic = reply_to(run.sent[-1], 1_013)
    wrong_topic = Reply(**{**_fields(wrong_topic), "topic": "user.events.verify"})
    assert run.feed(wrong_topic).verdict is Verdict.UNEXPECTED


def _fields(reply: Reply) -> dict[str, object]:
    return {f: getattr(reply, f) for f in reply.__struct_fields__}


def test_redelivered_replies_while_compensating_are_duplicates() -> None:
    run = Run()
    run.start()
    run.feed(reply_to(run.sent[-1], 1_010))
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-9"))
    deposit_refused = reply_to(run.sent[-1], 1_030, success=False)
    run.feed(deposit_refused)
    # The deposit's refusal again, while the refund is out: a redelivery.
    again = run.feed(deposit_refused)
    assert again.verdict is Verdict.DUPLICATE, again.reason
    refused = reply_to(run.sent[-1], 1_040, success=False, jitter=0.0)
    run.feed(refused)
    assert run.state is not None and run.state.retrying and run.state.attempt == 1
    # The refund's refusal again must not count against the next attempt.
    assert run.feed(refused).verdict is Verdict.DUPLICATE
    run.feed(Tick(saga_id="s-1", now=run.state.deadline))
    assert run.state.attempt == 2


def test_start_twice_is_a_duplicate_and_missing_input_is_refused() -> None:
    run = Run()
    run.start()
    assert run.start().verdict is Verdict.DUPLICATE
    other = Run("s-2")
    decision = other.feed(
        __import__("actors.core", fromlist=["Start"]).Start(
            saga_id="s-2", saga_type="deposit", input={"userId": "u"}, now=0
        )
    )
    assert decision.verdict is Verdict.UNEXPECTED
    assert "accountId, amount, currency" in decision.reason


def test_a_reply_lacking_a_field_a_later_payload_needs_fails_the_step() -> None:
    run = Run()
    run.start()
    run.feed(reply_to(run.sent[-1], 1_010))
    # process_payment answers without paymentId; deposit's payload needs it.
    run.feed(reply_to(run.sent[-1], 1_020))
    assert run.state is not None and run.state.status is Status.COMPENSATING
    assert "paymentId" in run.state.reason
    run.feed(reply_to(run.sent[-1], 1_030))  # the refund
    assert run.state.status is Status.COMPENSATED


def test_a_step_unanswered_to_the_end_is_compensated_too() -> None:
    """A payment whose every attempt went unanswered may have been taken: it is
    refunded (by sagaId) before the saga ends."""
    run = Run()
    run.start(now=0)
    run.feed(reply_to(run.sent[-1], 10))
    now = 10
    while run.sent[-1].topic == "payment.commands.process":
        now += 60_000
        run.feed(Tick(saga_id="s-1", now=now))
    refund = run.sent[-1]
    assert refund.topic == "payment.commands.refund"
    assert refund.message.payload["sagaId"] == "s-1"
    run.feed(reply_to(refund, now + 10))
    assert run.state is not None and run.state.status is Status.COMPENSATED
    assert run.state.compensated == ("process_payment",)


def test_pending_command_rebuilds_the_same_message_id() -> None:
    run = Run()
    run.start()
    assert run.state is not None
    again = pending_command(run.definition, run.state, 5_000)
    assert again is not None
    assert again.message.message_id == run.sent[-1].message.message_id
    assert again.message.payload == run.sent[-1].message.payload


# ---------------------------------------------------------------------------
# Properties over random runs.

FOUR_STEPS = SagaDefinition(
    name="four",
    inputs=("n",),
    steps=tuple(
        Step(
            name=f"s{i}",
            action=Action(
                command_topic=f"svc{i}.commands.do",
                payload={"n": "$input.n"},
                timeout_ms=1_000,
                retry=RetryPolicy(max_attempts=3, initial_backoff_ms=100),
            ),
            # s0 is a check (nothing to undo), s3 the pivot.
            compensation=None
            if i in (0, 3)
            else Action(
                command_topic=f"svc{i}.commands.undo",
                timeout_ms=1_000,
                retry=RetryPolicy(max_attempts=2, initial_backoff_ms=100),
            ),
        )
        for i in range(4)
    ),
)

ACTIONS = st.sampled_from(
    ["answer", "answer", "answer_old", "tick", "redeliver", "answer", "cancel"]
)


@pytest.mark.parametrize("definition", ["deposit", "four"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_runs_replay_exactly_and_end_once(
    definition: str, data: st.DataObject
) -> None:
    run = Run("s-1", FOUR_STEPS if definition == "four" else None)
    run.start(now=0, n=1, paymentId="unused")
    now = 0
    delivered: list[Reply] = []
    applied: set[str] = set()
    for i in range(200):
        if run.state is not None and run.state.status.terminal and i > 60:
            break
        # After a while time passes and the participants answer each command:
        # what is retried until answered is answered, and the saga ends.
        action = data.draw(ACTIONS) if i < 60 else ("tick", "answer")[i % 2]
        if action in ("answer", "answer_old") and run.sent:
            send = (
                run.sent[-1]
                if action == "answer"
                else data.draw(st.sampled_from(run.sent))
            )
            reply = reply_to(
                send,
                now,
                success=data.draw(st.booleans()) if i < 60 else True,
                jitter=data.draw(st.floats(0, 0.999)),
                paymentId="p-1",
            )
            if reply.message_id not in applied:
                delivered.append(reply)
                if run.feed(reply).events:
                    applied.add(reply.message_id)
        elif action == "cancel":
            # An operator's cancel, now and then sent twice: the second is a
            # duplicate; on an ended saga it is refused, never applied.
            request = f"op-{data.draw(st.integers(0, 3))}"
            was = run.state
            decision = run.cancel(now, request_id=request)
            assert was is not None
            if request in was.requests:
                assert decision.verdict is Verdict.DUPLICATE
            elif was.status.terminal:
                assert decision.verdict is Verdict.UNEXPECTED
            else:
                assert decision.verdict is Verdict.APPLIED
        elif action == "redeliver" and delivered:
            old = data.draw(st.sampled_from(delivered))
            decision = run.feed(Reply(**{**_fields(old), "now": now}))
            if old.message_id in applied:
                # The same reply again (a redelivery): harmless, never a dead letter.
                assert decision.verdict is Verdict.DUPLICATE, decision.reason
                assert not decision.events
        else:
            # Past the random phase, time jumps past any deadline or backoff.
            now += data.draw(st.integers(0, 40_000)) if i < 60 else 60_000
            jitter = data.draw(st.floats(0, 0.999)) if i < 60 else 0.5
            run.feed(Tick(saga_id="s-1", now=now, jitter=jitter))

    records = run.records()
    events = [e for r in records for e in r.events]

    # Replaying any prefix of the log rebuilds the live state of that moment.
    state: SagaState | None = None
    for record, live in zip(records, run.states, strict=True):
        state = fold(record.events, state)
        assert state == live
        assert record.seq + len(record.events) - 1 == state.seq

    # Exactly one terminal outcome, last; nothing after it decides anything.
    terminal = [e for e in events if isinstance(e, TERMINAL_EVENTS)]
    assert len(terminal) == 1 and events[-1] is terminal[0]
    assert run.state is not None and run.state.status.terminal
    for decision in run.decisions[run.decisions.index(_ending(run)) + 1 :]:
        assert not decision.events and not decision.commands

    # Each command once per attempt; attempts count up from 1 per step.
    ids = [s.message.message_id for s in run.sent]
    assert len(ids) == len(set(ids))
    logged = [
        e.message_id
        for e in events
        if isinstance(e, StepCommanded | CompensationCommanded)
    ]
    assert logged == ids
    attempts: dict[str, list[int]] = {}
    for send in run.sent:
        attempts.setdefault(send.message.step_id, []).append(
            int(send.message.metadata["attempt"])
        )
    for numbers in attempts.values():
        assert numbers == list(range(1, len(numbers) + 1))

    # Compensation: a step in doubt (unanswered to its last attempt) first,
    # then the completed steps, newest first; a refused step never.
    state = run.state
    order = ([state.doubtful] if state.doubtful else []) + list(reversed(state.replies))
    due = [n for n in order if run.definition.step(n).compensation]
    assert list(state.compensated) == due[: len(state.compensated)]
    if state.status is Status.COMPENSATED:
        assert list(state.compensated) == due


def _ending(run: Run) -> object:
    return next(
        d
        for d in run.decisions
        if d.state is not None and d.events and d.state.status.terminal
    )


def test_decide_is_deterministic() -> None:
    a, b = Run(), Run()
    for run in (a, b):
        run.start()
        run.feed(Tick(saga_id="s-1", now=20_000, jitter=0.5))
    assert a.log == b.log and a.sent == b.sent
    assert decide(a.definition, a.state, Tick(saga_id="s-1", now=0)).events == []
