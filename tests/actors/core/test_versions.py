"""Versions of a saga definition: a saga runs to its end on the version it
started with; an operator's migrate moves it to another (from its step there);
the deploy gate checks each saga on its own version, or on the one a migrate
would move it to."""

from __future__ import annotations

import msgspec
import pytest

from actors.core import (
    DEPOSIT,
    DefinitionMoved,
    Migrate,
    SagaStarted,
    Verdict,
    decide,
    pending_command,
)
from actors.core.compatibility import check_history
from actors.errors import DefinitionError
from tests.actors.core.sagas import Run, reply_to
from tests.actors.core.test_compatibility import CHECKED

#: Version 2 checks limits before the payment; version 1 is kept.
V2 = msgspec.structs.replace(CHECKED, version=2, previous=(DEPOSIT,))


def migrate(run: Run, to: int, now: int = 2_000, request: str = "m-1") -> Verdict:
    decision = run.feed(
        Migrate(
            saga_id=run.saga_id,
            request_id=request,
            reason="move to the new limits",
            operator="ana@desk",
            to_version=to,
            now=now,
        )
    )
    return decision.verdict


def test_a_saga_runs_on_the_version_it_started_with() -> None:
    new = Run("s-new", definition=V2)
    started = new.start(now=1_000).events[0]
    assert isinstance(started, SagaStarted) and started.version == 2
    new.feed(reply_to(new.sent[-1], 1_040))
    assert new.sent[-1].topic == "payment.commands.limits"
    # Started before the deploy, on version 1: the deployed V2 runs it on 1.
    old = Run("s-old")
    old.start(now=1_000)
    assert old.state is not None and old.state.version == 1
    old.definition = V2
    old.feed(reply_to(old.sent[-1], 1_040))
    assert old.sent[-1].topic == "payment.commands.process"
    # A deploy that drops version 1 cannot run it: its host says why.
    dropped = msgspec.structs.replace(CHECKED, version=2)
    with pytest.raises(DefinitionError, match="has no version 1"):
        decide(dropped, old.state, reply_to(old.sent[-1], 1_090, paymentId="p"))
    with pytest.raises(DefinitionError, match="has no version 1"):
        pending_command(dropped, old.state, 2_000)


def test_migrate_moves_a_saga_on_from_its_step() -> None:
    run = Run("s-1")
    run.start(now=1_000)
    run.definition = V2
    assert migrate(run, 2) is Verdict.APPLIED
    moved = run.decisions[-1].events
    assert moved == [
        DefinitionMoved(
            request_id="m-1",
            from_version=1,
            to_version=2,
            reason="move to the new limits",
            operator="ana@desk",
        )
    ]
    assert run.state is not None and run.state.version == 2
    run.feed(reply_to(run.sent[-1], 1_040))
    assert run.sent[-1].topic == "payment.commands.limits"
    assert migrate(run, 2, request="m-1") is Verdict.DUPLICATE


def test_migrate_refuses_what_cannot_apply() -> None:
    run = Run("s-1")
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], 1_040))  # at process_payment
    without = msgspec.structs.replace(
        DEPOSIT, version=3, steps=DEPOSIT.steps[:1], previous=(DEPOSIT,)
    )
    run.definition = without
    assert migrate(run, 3) is Verdict.UNEXPECTED
    assert "has no step 'process_payment', where saga s-1 is" in (
        run.decisions[-1].reason
    )
    assert migrate(run, 7, request="m-2") is Verdict.UNEXPECTED
    assert "has no version 7" in run.decisions[-1].reason
    assert migrate(run, 1, request="m-3") is Verdict.UNEXPECTED
    assert "runs on version 1 already" in run.decisions[-1].reason


def test_previous_versions_must_be_the_same_saga_below_this_one() -> None:
    with pytest.raises(DefinitionError, match="without versions of its own"):
        msgspec.structs.replace(V2, version=3, previous=(V2,))
    renamed = msgspec.structs.replace(DEPOSIT, name="other")
    with pytest.raises(DefinitionError, match="must be saga 'deposit'"):
        msgspec.structs.replace(V2, previous=(renamed,))
    with pytest.raises(DefinitionError, match="must be below version 2"):
        msgspec.structs.replace(
            V2, previous=(msgspec.structs.replace(DEPOSIT, version=2),)
        )
    assert V2.versions == [1, 2] and V2.at(1) is DEPOSIT


def test_the_gate_checks_each_saga_on_its_own_version_or_the_one_it_moves_to() -> None:
    run = Run("s-1")
    run.start(now=1_000)
    run.feed(reply_to(run.sent[-1], 1_040))  # past verification, on version 1
    # Deployed with version 1 kept: the saga goes on on 1, nothing diverges.
    assert check_history(run.records(), V2) is None
    # Deployed without it: the gate says the saga cannot be run.
    dropped = msgspec.structs.replace(CHECKED, version=2)
    found = check_history(run.records(), dropped)
    assert found is not None and "has no version 1" in found.reason
    # Moved to version 2: its history is not one version 2 writes.
    moved = check_history(run.records(), V2, on_version=2)
    assert moved is not None and moved.seq == 3
    assert moved.candidate[1] == "step_commanded step=check_limits attempt=1"
    # A saga still at verification could move.
    early = Run("s-2")
    early.start(now=1_000)
    assert check_history(early.records(), V2, on_version=2) is None
    assert check_history(early.records(), V2, on_version=1) is None
