"""An operator's cancel and retry, decided by the pure core: each is an input
that lands in the saga's log, and money stays where the saga's rules put it."""

from __future__ import annotations

from actors.core import (
    CancelRequested,
    RetryRequested,
    Status,
    Tick,
    Verdict,
    fold,
)
from tests.actors.core.sagas import Run, reply_to


def tags(run: Run) -> list[str]:
    return [type(e).__name__ for r in run.records() for e in r.events]


def paid(run: Run) -> None:
    """Verified, and the payment command in flight."""
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], 1_010))
    assert run.sent[-1].topic == "payment.commands.process"


def test_cancel_with_the_payment_in_flight_refunds_it_at_once() -> None:
    run = Run()
    paid(run)
    decision = run.cancel(1_020, reason="customer withdrew")
    assert decision.verdict is Verdict.APPLIED
    [request, _] = decision.events
    assert request == CancelRequested(
        request_id="op-1",
        reason="customer withdrew",
        operator="ana@desk",
        abandoned="process_payment",
    )
    # The payment may or may not have landed: its refund (barred by sagaId if
    # it never did) goes out now, and the saga never goes forward.
    assert run.sent[-1].topic == "payment.commands.refund"
    assert run.state is not None and run.state.status is Status.COMPENSATING
    payment = run.sent[-2]
    # The payment's late success is reported, never applied.
    assert run.feed(reply_to(payment, 1_030, paymentId="p-1")).verdict is Verdict.LATE
    run.feed(reply_to(run.sent[-1], 1_040, refundId="r-1"))
    assert run.state.status is Status.COMPENSATED
    assert run.state.reason == "cancelled: customer withdrew"
    assert "StepCommanded" not in tags(run)[-3:]


def test_cancel_waits_for_a_step_that_cannot_be_undone() -> None:
    run = Run()
    run.start(now=1_000)
    decision = run.cancel(1_005)
    [request] = decision.events
    assert isinstance(request, CancelRequested) and request.abandoned == ""
    assert run.state is not None and run.state.status is Status.RUNNING
    assert run.state.cancel == "why"
    # The verification answers: the saga stops before paying, nothing to undo.
    run.feed(reply_to(run.sent[-1], 1_010))
    assert run.state.status is Status.REJECTED
    assert run.state.reason == "cancelled: why"
    assert [s.topic for s in run.sent] == ["user.commands.verify"]


def test_cancel_after_the_deposit_went_out_completes_if_it_landed() -> None:
    run = Run()
    paid(run)
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-1"))
    deposit = run.sent[-1]
    assert deposit.topic == "account.commands.deposit"
    run.cancel(1_025)
    # The pivot cannot be given up on: a success completes the saga.
    run.feed(reply_to(deposit, 1_030))
    assert run.state is not None and run.state.status is Status.COMPLETED


def test_cancel_after_the_deposit_went_out_refunds_if_it_was_refused() -> None:
    run = Run()
    paid(run)
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-1"))
    run.cancel(1_025)
    run.feed(reply_to(run.sent[-1], 1_030, success=False))
    assert run.sent[-1].topic == "payment.commands.refund"


def test_cancel_again_is_a_duplicate_and_an_ended_saga_refuses_it() -> None:
    run = Run()
    paid(run)
    run.cancel(1_020)
    assert run.cancel(1_021).verdict is Verdict.DUPLICATE
    # While compensating, another cancel is recorded and changes nothing.
    before = len(run.sent)
    decision = run.cancel(1_022, request_id="op-9")
    assert decision.verdict is Verdict.APPLIED
    assert [type(e) for e in decision.events] == [CancelRequested]
    assert len(run.sent) == before
    run.feed(reply_to(run.sent[-1], 1_030))
    refused = run.cancel(1_040, request_id="op-10")
    assert refused.verdict is Verdict.UNEXPECTED
    assert "has ended (compensated)" in refused.reason


def failed(run: Run) -> int:
    """The deposit refused, then its refund refused until its attempts run out."""
    paid(run)
    run.feed(reply_to(run.sent[-1], 1_020, paymentId="p-1"))
    run.feed(reply_to(run.sent[-1], 1_030, success=False))
    now = 1_030
    while run.state is not None and not run.state.status.terminal:
        now += 60_000
        if run.state.retrying:
            run.feed(Tick(saga_id=run.saga_id, now=now))
        else:
            run.feed(reply_to(run.sent[-1], now, success=False))
    assert run.state is not None and run.state.status is Status.FAILED
    return now


def test_retry_of_a_failed_saga_sends_its_compensation_with_a_fresh_policy() -> None:
    run = Run()
    now = failed(run)
    decision = run.retry(now + 1)
    assert decision.verdict is Verdict.APPLIED
    assert isinstance(decision.events[0], RetryRequested)
    assert decision.events[0].spent == 3
    refund = run.sent[-1]
    assert refund.message.message_id == "s-1:process_payment.compensate:4"
    assert refund.message.metadata["idempotencyKey"] == "s-1:process_payment.compensate"
    # Refused once more: retried under the policy again, not failed at once.
    run.feed(reply_to(refund, now + 10, success=False))
    assert run.state is not None and run.state.status is Status.COMPENSATING
    assert run.state.retrying
    run.feed(Tick(saga_id=run.saga_id, now=now + 60_000))
    run.feed(reply_to(run.sent[-1], now + 60_010, refundId="r-1"))
    assert run.state.status is Status.COMPENSATED
    # The log folds to the same state, whatever came after the first end.
    assert fold(e for r in run.records() for e in r.events) == run.state


def test_retry_is_for_failed_sagas_only_and_once_per_request() -> None:
    run = Run()
    paid(run)
    refused = run.retry(1_020)
    assert refused.verdict is Verdict.UNEXPECTED
    assert "only a failed saga can be retried" in refused.reason
    run2 = Run("s-2")
    now = failed(run2)
    run2.retry(now + 1)
    assert run2.retry(now + 2).verdict is Verdict.DUPLICATE
