"""The deploy gate's core: each golden log of each shipped definition replays
clean through it, and a changed definition is caught where it parts ways with
a saga's history (or with the command a saga in flight waits on)."""

from __future__ import annotations

import msgspec
import pytest

from actors.core import DEFINITIONS, DEPOSIT, Action, HistoryCodec, Step, fold
from actors.core.compatibility import check_history, check_next_command
from tests.actors.core.sagas import Run, reply_to
from tests.actors.core.test_golden import GOLDEN, OLD_LOGS, SCENARIOS

CODEC = HistoryCodec()

#: A step inserted before the payment: sagas past verification part ways.
CHECKED = msgspec.structs.replace(
    DEPOSIT,
    steps=(
        DEPOSIT.steps[0],
        Step(
            name="check_limits",
            action=Action(
                command_topic="payment.commands.limits",
                payload={"userId": "$input.userId", "amount": "$input.amount"},
            ),
        ),
        *DEPOSIT.steps[1:],
    ),
)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_golden_log_of_the_shipped_definitions_replays_clean(name: str) -> None:
    """Golden logs of each shipped definition: the definitions that wrote
    them pass the gate on them."""
    assert set(DEFINITIONS) == {"deposit"}  # a new type brings its golden logs
    records = [
        CODEC.decode(line)
        for line in (GOLDEN / f"deposit_{name}.jsonl").read_bytes().splitlines()
    ]
    assert check_history(records, DEFINITIONS[records[0].saga_type]) is None


@pytest.mark.parametrize("name", sorted(OLD_LOGS))
def test_a_log_written_by_older_rules_is_named_where_today_decides_otherwise(
    name: str,
) -> None:
    records = [
        CODEC.decode(line)
        for line in (GOLDEN / f"{name}.jsonl").read_bytes().splitlines()
    ]
    found = check_history(records, DEPOSIT)
    assert found is not None and found.reason == "the candidate decides otherwise"
    # The compensation unanswered to its last attempt: today it is asked again.
    assert any("compensation_timed_out" in line for line in found.logged)
    assert "retryAt=False" in found.logged[0]
    assert "retryAt=True" in found.candidate[0] and "inDoubt=True" in found.candidate[0]


def test_a_step_inserted_before_the_current_step_names_exactly_the_sagas_past_it() -> (
    None
):
    at_verify = Run("s-verify")
    at_verify.start(now=1_000)
    at_payment = Run("s-payment")
    at_payment.start(now=1_000)
    at_payment.feed(reply_to(at_payment.sent[-1], 1_040))
    at_deposit = Run("s-deposit")
    at_deposit.start(now=1_000)
    at_deposit.feed(reply_to(at_deposit.sent[-1], 1_040))
    at_deposit.feed(reply_to(at_deposit.sent[-1], 1_090, paymentId="p-1"))
    found = {
        run.saga_id: check_history(run.records(), CHECKED)
        for run in (at_verify, at_payment, at_deposit)
    }
    assert found["s-verify"] is None
    for saga_id in ("s-payment", "s-deposit"):
        divergence = found[saga_id]
        assert divergence is not None
        assert divergence.seq == 3  # verify_user's success, and what came next
        assert divergence.logged[1] == "step_commanded step=process_payment attempt=1"
        assert divergence.candidate[1] == "step_commanded step=check_limits attempt=1"
    # Unchanged, every one of them passes.
    assert all(check_history(r.records(), DEPOSIT) is None
               for r in (at_verify, at_payment, at_deposit))  # fmt: skip


def test_a_changed_payload_is_caught_on_the_command_a_saga_waits_on() -> None:
    run = Run("s-1")
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], 1_040))
    run.feed(reply_to(run.sent[-1], 1_090, paymentId="p-1"))
    deposit = DEPOSIT.steps[2]
    renamed = msgspec.structs.replace(
        DEPOSIT,
        steps=(
            *DEPOSIT.steps[:2],
            msgspec.structs.replace(
                deposit,
                action=msgspec.structs.replace(
                    deposit.action,
                    payload={**deposit.action.payload, "amount": "$input.currency"},
                ),
            ),
        ),
    )
    # The history agrees (payloads are not logged) ...
    assert check_history(run.records(), renamed) is None
    state = fold(e for r in run.records() for e in r.events)
    # ... the command it would send again does not.
    found = check_next_command(state, DEPOSIT, renamed, 2_000)
    assert found is not None and found.seq == 0
    assert '"amount":250' in found.logged[0] and '"amount":"USD"' in found.candidate[0]
    assert check_next_command(state, DEPOSIT, DEPOSIT, 2_000) is None


def test_a_definition_without_the_awaited_step_fails_on_replay() -> None:
    run = Run("s-1")
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], 1_040))
    without = msgspec.structs.replace(DEPOSIT, steps=DEPOSIT.steps[1:])
    found = check_history(run.records(), without)
    assert found is not None and found.seq == 1
    state = fold(e for r in run.records() for e in r.events)
    assert check_next_command(state, DEPOSIT, without, 2_000) is None  # same step
    gone = msgspec.structs.replace(DEPOSIT, steps=DEPOSIT.steps[:1])
    missing = check_next_command(state, DEPOSIT, gone, 2_000)
    assert missing is not None and "no step 'process_payment'" in missing.reason
