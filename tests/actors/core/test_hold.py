"""A saga held behind a dead letter: its later replies kept in order, its
deadlines and cancels waiting, and the operator's release applying the
replayed message and then the held replies, as one decision."""

from __future__ import annotations

import msgspec

from actors.core import (
    HeldReplyRefused,
    HoldReleased,
    ReplyHeld,
    SagaHeld,
    Status,
    StepCommanded,
    StepSucceeded,
    Tick,
    Verdict,
    fold,
)
from tests.actors.core.sagas import Run, reply_to


def held_at_verification() -> Run:
    run = Run("s-1")
    run.start(now=1_000)
    decision = run.hold(1_010)
    assert decision.events == [
        SagaHeld(origin="user.events.verify/0/7", reason="poison")
    ]
    return run


def test_a_held_saga_keeps_its_replies_and_waits() -> None:
    run = held_at_verification()
    verify = run.sent[-1]
    answer = reply_to(verify, 1_040)
    kept = run.feed(answer)
    assert [type(e) for e in kept.events] == [ReplyHeld] and kept.commands == []
    assert run.state is not None and run.state.step == "verify_user"
    assert run.feed(answer).verdict is Verdict.DUPLICATE  # kept once
    # Its deadline waits; a cancel is refused with what to do; a second hold
    # (a later letter) changes nothing.
    assert run.feed(Tick(saga_id="s-1", now=10**9)).events == []
    refused = run.cancel(1_050)
    assert refused.verdict is Verdict.UNEXPECTED
    assert "replay or resolve that letter first" in refused.reason
    assert run.hold(1_060, origin="user.events.verify/0/9").events == []
    assert run.state.held == "user.events.verify/0/7"


def test_resolving_the_letter_applies_the_held_replies_in_order() -> None:
    run = held_at_verification()
    verify = run.sent[-1]
    run.feed(reply_to(verify, 1_040))
    released = run.release(2_000)
    assert [type(e) for e in released.events] == [
        HoldReleased,
        StepSucceeded,
        StepCommanded,
    ]
    [payment] = released.commands
    assert payment.topic == "payment.commands.process"
    state = run.state
    assert state is not None and not state.held and state.held_replies == ()
    assert state.step == "process_payment"
    # The saga goes on as any: its deadlines fire again.
    assert state.deadline > 2_000
    # The same release again is a duplicate.
    assert run.release(2_100).verdict is Verdict.DUPLICATE
    assert state == fold(e for r in run.records() for e in r.events)


def test_replaying_a_fixed_message_applies_it_first_then_the_held_ones() -> None:
    run = held_at_verification()
    verify = run.sent[-1]
    fixed = reply_to(verify, 1_030)
    run.feed(msgspec.structs.replace(reply_to(verify, 1_040), message_id="later"))
    released = run.release(2_000, how="replayed", reply=fixed)
    assert [type(e) for e in released.events] == [
        HoldReleased,
        StepSucceeded,  # the fixed message
        StepCommanded,
    ]  # and the held reply, to a step answered already: a duplicate, passed over
    first = released.events[0]
    assert isinstance(first, HoldReleased) and first.replayed is not None
    assert first.replayed.reply_id == fixed.message_id
    assert run.state is not None and run.state.step == "process_payment"


def test_a_release_that_cannot_apply_leaves_the_saga_held() -> None:
    run = held_at_verification()
    verify = run.sent[-1]
    wrong = msgspec.structs.replace(reply_to(verify, 1_030), topic="user.events.x")
    refused = run.release(2_000, how="replayed", reply=wrong)
    assert refused.verdict is Verdict.UNEXPECTED
    assert "stays held" in refused.reason and "expected user.events.verify" in (
        refused.reason
    )
    other = run.release(2_000, origin="user.events.verify/1/1")
    assert other.verdict is Verdict.UNEXPECTED
    assert "not user.events.verify/1/1" in other.reason
    assert run.state is not None and run.state.held == "user.events.verify/0/7"
    free = Run("s-2")
    free.start(now=1_000)
    assert "is not held" in free.release(2_000).reason


def test_a_held_reply_the_saga_refuses_is_kept_with_its_reason() -> None:
    run = held_at_verification()
    verify = run.sent[-1]
    stray = msgspec.structs.replace(
        reply_to(verify, 1_040), step_id="deposit", message_id="stray"
    )
    run.feed(stray)
    run.feed(reply_to(verify, 1_050))
    released = run.release(2_000)
    assert [type(e) for e in released.events] == [
        HoldReleased,
        HeldReplyRefused,
        StepSucceeded,
        StepCommanded,
    ]
    refused = released.events[1]
    assert isinstance(refused, HeldReplyRefused)
    assert "waiting on step 'verify_user', not 'deposit'" in refused.reason
    assert run.state is not None and run.state.status is Status.RUNNING
