"""Saga definitions: validated when built, rendered without surprises."""

from __future__ import annotations

import pytest

from actors.core import (
    DEPOSIT,
    Action,
    RetryPolicy,
    SagaDefinition,
    Step,
    render,
)
from actors.errors import DefinitionError, PayloadError
from events.errors import InvalidTopicNameError


def test_deposit_saga_shape() -> None:
    assert [s.name for s in DEPOSIT.steps] == [
        "verify_user",
        "process_payment",
        "deposit",
    ]
    assert [s.action.reply_topic for s in DEPOSIT.steps] == [
        "user.events.verify",
        "payment.events.process",
        "account.events.deposit",
    ]
    refund = DEPOSIT.step("process_payment").compensation
    assert refund is not None and refund.reply_topic == "payment.events.refund"
    assert DEPOSIT.step("verify_user").compensation is None


def test_backoff_grows_exponentially_within_the_cap_and_jitter_shortens_it() -> None:
    policy = RetryPolicy(
        initial_backoff_ms=100, multiplier=2, max_backoff_ms=500, jitter=0.5
    )
    assert [policy.backoff_ms(a, 0.0) for a in (1, 2, 3, 4)] == [100, 200, 400, 500]
    assert policy.backoff_ms(2, 0.999) == 100  # 200 ms, less up to half of it


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"x": "$input.nope"}, "must name one of the inputs"),
        ({"x": "$steps.later.id"}, "earlier step"),
        ({"x": "$steps.first"}, "earlier step"),
        ({"x": "$saga.name"}, "only $saga.id"),
        ({"x": ["$env.HOME"]}, "references start with"),
    ],
)
def test_bad_templates_fail_when_the_definition_is_built(
    payload: dict, needle: str
) -> None:
    with pytest.raises(DefinitionError, match="second") as info:
        SagaDefinition(
            name="t",
            inputs=("a",),
            steps=(
                Step(name="first", action=Action(command_topic="x.commands.y")),
                Step(
                    name="second",
                    action=Action(command_topic="x.commands.z", payload=payload),
                ),
                Step(name="later", action=Action(command_topic="x.commands.w")),
            ),
        )
    assert needle in str(info.value)


def test_wrong_topics_and_names_are_refused() -> None:
    with pytest.raises(DefinitionError, match="not a commands topic"):
        Action(command_topic="x.events.y")
    with pytest.raises(InvalidTopicNameError):
        Action(command_topic="Payments")
    with pytest.raises(DefinitionError, match="twice"):
        SagaDefinition(
            name="t",
            steps=(
                Step(name="a", action=Action(command_topic="x.commands.y")),
                Step(name="a", action=Action(command_topic="x.commands.y")),
            ),
        )
    with pytest.raises(DefinitionError, match="no steps"):
        SagaDefinition(name="t", steps=())


def test_backoff_of_a_step_retried_for_ever_stays_at_the_cap() -> None:
    """A step retried until answered reaches attempt numbers where the power
    overflowed (L1): the exponent is capped before it is taken."""
    assert RetryPolicy().backoff_ms(1_100, 0.0) == 30_000
    assert RetryPolicy(max_attempts=5_000).backoff_ms(10**6, 0.5) == 27_000
    slow = RetryPolicy(initial_backoff_ms=1, multiplier=1.0001, max_backoff_ms=2)
    assert slow.backoff_ms(10**9, 0.0) == 2
    # No initial wait is allowed (a step's retry comes 1 ms on): it stays so,
    # and the power it is multiplied by once overflowed all the same.
    assert RetryPolicy(initial_backoff_ms=0).backoff_ms(2_000, 0.5) == 1


def test_nothing_may_follow_the_pivot() -> None:
    """A step after the pivot could fail, and the compensation would then
    refund around a deposit that cannot be undone."""
    undo = Action(command_topic="p.commands.undo")
    with pytest.raises(DefinitionError, match="after the pivot 'credit'"):
        SagaDefinition(
            name="t",
            steps=(
                Step(
                    name="pay",
                    action=Action(command_topic="p.commands.do"),
                    compensation=undo,
                ),
                Step(name="credit", action=Action(command_topic="a.commands.do")),
                Step(name="notify", action=Action(command_topic="n.commands.do")),
            ),
        )
    assert DEPOSIT.steps[-1].retried_until_answered


def test_render_fills_references_and_keeps_literals() -> None:
    template = {
        "a": "$input.a",
        "p": "$steps.s.id",
        "id": "$saga.id",
        "lit": "$$5",
        "n": [1, "x"],
    }
    assert render(template, "S", {"a": 1}, {"s": {"id": "P"}}) == {
        "a": 1,
        "p": "P",
        "id": "S",
        "lit": "$5",
        "n": [1, "x"],
    }
    with pytest.raises(PayloadError, match="reply of step 's' has no field 'id'"):
        render({"p": "$steps.s.id"}, "S", {}, {"s": {}})


def test_declared_input_types_refuse_a_start_before_it_starts() -> None:
    from actors.core import Start, Verdict, check_input, decide
    from actors.errors import InvalidRequestError

    good = {"userId": "u", "accountId": "a", "amount": 5, "currency": "USD"}
    check_input(DEPOSIT, good)
    for amount in ("lots", -5, 0, 2.5, True, None):
        bad = {**good, "amount": amount}
        with pytest.raises(InvalidRequestError, match="amount must be an integer"):
            check_input(DEPOSIT, bad)
        # The engine applies the same rule: the saga never starts.
        start = Start(saga_id="s", saga_type="deposit", input=bad, now=0)
        decision = decide(DEPOSIT, None, start)
        assert decision.verdict is Verdict.UNEXPECTED and not decision.events


def test_input_types_must_name_declared_inputs_and_fit_their_kind() -> None:
    from actors.core import InputType

    step = DEPOSIT.steps[0]
    with pytest.raises(DefinitionError, match="names b, not among the inputs"):
        SagaDefinition(
            name="t",
            inputs=("a",),
            input_types={"b": InputType("string")},
            steps=(step,),
        )
    with pytest.raises(DefinitionError, match="a string input has no minimum"):
        InputType("string", minimum=1)
    assert InputType("number", minimum=0).problem(0.5) is None
    assert InputType("boolean").problem(1) == "must be a boolean, got 1"
