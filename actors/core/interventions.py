"""An operator's requests to a running saga: cancel, retry, migrate.

Each is an input to the saga like a reply (``saga cancel``, ``saga retry``,
``saga migrate`` send them on ``saga.requests``): it is decided here, through
the saga's normal moves, and lands in its log with who asked and why. Nothing
writes behind a saga's back. Each request is idempotent by its id.
"""

from __future__ import annotations

from actors.core.definitions import SagaDefinition
from actors.core.draft import Draft
from actors.core.hold import held_reason
from actors.core.inputs import Cancel, Decision, Migrate, Retry, duplicate, refused
from actors.core.saga_events import CancelRequested, DefinitionMoved, RetryRequested
from actors.core.state import SagaState, Status
from actors.errors import DefinitionError


def cancel(definition: SagaDefinition, state: SagaState, cancel: Cancel) -> Decision:
    """Stop now and compensate: the step in flight is given up on in doubt and
    compensated with the completed ones, as after its last timeout. A step
    without a compensation cannot be given up on (its effect could not be
    undone), so the cancel waits for its answer; while compensating, the saga
    is on its way back already. Either way the request lands in the log."""
    if cancel.request_id in state.requests:
        return duplicate(state, f"request {cancel.request_id} was applied already")
    if state.status.terminal:
        return refused(
            state,
            f"saga {state.saga_id} has ended ({state.status}): there is nothing "
            "to cancel",
        )
    decision = Draft(definition, state, cancel.now)
    step = definition.step(state.step)
    # A step that cannot be undone (or a saga on its way back already) is
    # waited for, not abandoned: the request is logged and nothing else.
    waits = state.compensating or step.compensation is None
    decision.emit(
        CancelRequested(
            request_id=cancel.request_id,
            reason=cancel.reason,
            operator=cancel.operator,
            abandoned="" if waits else step.name,
        )
    )
    if waits:
        return decision.done()
    decision.compensate_next(f"cancelled: {cancel.reason}")
    return decision.done()


def retry(definition: SagaDefinition, state: SagaState, retry: Retry) -> Decision:
    """A failed saga sends the compensation it gave up on again, its attempts
    counted afresh; the messageIds go on from the last attempt, so each is new
    while the idempotency key stays the step's."""
    if retry.request_id in state.requests:
        return duplicate(state, f"request {retry.request_id} was applied already")
    if state.status is not Status.FAILED:
        return refused(
            state,
            f"saga {state.saga_id} is {state.status}: only a failed saga can be "
            "retried",
        )
    decision = Draft(definition, state, retry.now)
    pending = decision.to_compensate()
    if not pending:
        return refused(state, f"saga {state.saga_id} has nothing left to compensate")
    name = pending[0]
    spent = state.attempt if name == state.step else 0
    decision.emit(
        RetryRequested(
            request_id=retry.request_id,
            reason=retry.reason,
            operator=retry.operator,
            spent=spent,
        )
    )
    decision.command_compensation(name, spent + 1)
    return decision.done()


def migrate(root: SagaDefinition, state: SagaState, move: Migrate) -> Decision:
    """Move a saga in flight onto another version of its definition: it goes
    on from its step there (the deploy gate, ``saga check``, says first
    whether its history holds under that version)."""
    if move.request_id in state.requests:
        return duplicate(state, f"request {move.request_id} was applied already")
    if state.status.terminal:
        return refused(state, f"saga {state.saga_id} has ended ({state.status})")
    if state.held:
        return refused(state, held_reason(state))
    if move.to_version == state.version:
        return refused(
            state, f"saga {state.saga_id} runs on version {state.version} already"
        )
    try:
        target = root.at(move.to_version)
    except DefinitionError as exc:
        return refused(state, str(exc))
    if state.step and not target.has_step(state.step):
        return refused(
            state,
            f"version {move.to_version} of saga {root.name!r} has no step "
            f"{state.step!r}, where saga {state.saga_id} is",
        )
    decision = Draft(target, state, move.now)
    decision.emit(
        DefinitionMoved(
            request_id=move.request_id,
            from_version=state.version,
            to_version=move.to_version,
            reason=move.reason,
            operator=move.operator,
        )
    )
    return decision.done()
