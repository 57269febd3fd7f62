"""The decider: ``decide(definition, state, input)`` takes one input (a
start request, a participant's reply, or a timer tick) and returns the new saga
events and the commands to send, as data. Time, jitter and ids arrive inside the
inputs, so a decision is a function of its arguments and replay is exact. This
module does no I/O; the import contracts keep Ray, Kafka and DuckDB out.

Doubt: a command whose last attempt went unanswered may or may not have taken
effect. A step with a compensation is then given up on and compensated too; a
step without one (above all the pivot, the deposit) and every compensation are
sent again until they are answered, because giving up on them would leave money
in doubt (see :class:`~actors.core.definitions.Step`). A reply is tied to the command
it answers: when it names one (``command_id``), it must be a command this saga
sent for the step it names; a reply to an older attempt of the awaited step is
that step's answer, since every attempt carries one idempotency key.

The moves a decision is made of are :class:`~actors.core.draft.Draft`'s; an
operator's requests are decided in :mod:`~actors.core.interventions`, a hold
behind a dead letter in :mod:`~actors.core.hold`.
"""

from __future__ import annotations

from actors.core.definitions import COMPENSATE, Action, SagaDefinition
from actors.core.draft import Draft
from actors.core.hold import held_reason, hold, hold_reply, release
from actors.core.inputs import (
    Cancel,
    Decision,
    Hold,
    Input,
    Migrate,
    Release,
    Reply,
    Retry,
    Send,
    Start,
    Tick,
    Verdict,
    duplicate,
    refused,
)
from actors.core.interventions import cancel, migrate, retry
from actors.core.requests import check_input
from actors.core.saga_events import (
    CompensationFailed,
    CompensationTimedOut,
    SagaFailed,
    SagaStarted,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from actors.core.state import SagaState, awaits
from actors.errors import InvalidRequestError


def decide(
    definition: SagaDefinition, state: SagaState | None, input: Input
) -> Decision:
    """React to one input: the saga events to append and the commands to send."""
    if isinstance(input, Start):
        return _start(definition, state, input)
    if state is None:  # every other input is for a saga that started
        return refused(state, f"no saga {input.saga_id} is known")
    if isinstance(input, Migrate):
        return migrate(definition, state, input)
    if isinstance(input, Hold):  # needs no definition: a dead letter may be why
        return hold(state, input)
    # The saga runs on the version it started with (or was moved to); one no
    # longer deployed raises, and its host dead-letters the input with why.
    definition = definition.at(state.version)
    match input:
        case Reply() if state.held:
            return hold_reply(state, input)
        case Reply():
            return _reply(definition, state, input)
        case Tick() if state.held:
            return Decision([], [], state)  # its deadlines wait for the release
        case Tick():
            return _tick(definition, state, input)
        case Cancel() if state.held and input.request_id not in state.requests:
            return refused(state, held_reason(state))
        case Cancel():
            return cancel(definition, state, input)
        case Retry():
            return retry(definition, state, input)
        case Release():
            return release(definition, state, input, _reply)
    raise TypeError(f"not a saga input: {input!r}")


def _start(
    definition: SagaDefinition, state: SagaState | None, start: Start
) -> Decision:
    if state is not None:
        return duplicate(state, f"saga {start.saga_id} was started already")
    try:
        check_input(definition, start.input)
    except InvalidRequestError as exc:
        return refused(state, str(exc))
    decision = Draft(definition, None, start.now)
    decision.emit(
        SagaStarted(
            saga_id=start.saga_id,
            saga_type=definition.name,
            input=start.input,
            version=definition.version,
        )
    )
    decision.command_step(0, 1)
    return decision.done()


def _reply(definition: SagaDefinition, state: SagaState, reply: Reply) -> Decision:
    if reply.message_id in state.seen:
        return duplicate(state, f"reply {reply.message_id} was applied already")
    if reply.success and reply.step_id == state.doubtful:
        return _late(state, state.doubtful, str(state.status))
    if state.status.terminal:
        return duplicate(state, f"saga {state.saga_id} has ended ({state.status})")
    awaited = state.step_id
    if reply.step_id != awaited:
        return _stray(definition, state, reply)
    if reply.command_id is not None and not awaits(state, reply.command_id):
        return refused(
            state,
            f"reply {reply.message_id} answers command {reply.command_id!r}, which "
            f"saga {state.saga_id} never sent (it sent attempts 1..{state.attempt} "
            f"of step {awaited!r})",
        )
    step = definition.step(state.step)
    action = step.compensation if state.compensating else step.action
    assert action is not None
    if reply.topic != action.reply_topic:
        return refused(
            state,
            f"reply for step {reply.step_id!r} arrived on {reply.topic}, "
            f"expected {action.reply_topic}",
        )
    decision = Draft(definition, state, reply.now)
    name, attempt = state.step, state.attempt
    if not state.compensating:
        if reply.success:
            decision.emit(
                StepSucceeded(
                    step=name,
                    attempt=attempt,
                    reply_id=reply.message_id,
                    payload=reply.payload,
                )
            )
            decision.step_succeeded()
        else:
            error = reply.error or "failed without a reason"
            decision.emit(
                StepFailed(
                    step=name, attempt=attempt, error=error, reply_id=reply.message_id
                )
            )
            decision.fail_forward(f"{name}: {error}")
        return decision.done()
    if reply.success:
        decision.emit(
            StepCompensated(step=name, attempt=attempt, reply_id=reply.message_id)
        )
        decision.compensate_next("")
        return decision.done()
    # A compensation must succeed eventually: a refusal is retried like a timeout.
    error = reply.error or "compensation refused without a reason"
    retry_at = _retry_at(action, attempt - state.spent, reply.now, reply.jitter)
    decision.emit(
        CompensationFailed(
            step=name,
            attempt=attempt,
            error=error,
            retry_at=retry_at,
            reply_id=reply.message_id,
        )
    )
    if retry_at is None:
        decision.emit(
            SagaFailed(
                reason=f"compensation of {name} refused after {attempt} "
                f"attempt(s): {error}"
            )
        )
    return decision.done()


def _stray(definition: SagaDefinition, state: SagaState, reply: Reply) -> Decision:
    """A reply that is not the one awaited: an old one again, a late one, or a
    wrong one."""
    step_id = reply.step_id
    if step_id.endswith(COMPENSATE):
        name = step_id.removesuffix(COMPENSATE)
        if name in state.compensated:
            return duplicate(state, f"compensation of {name} was applied already")
    elif definition.has_step(step_id) and (
        step_id in state.replies
        or step_id == state.failed
        or definition.index(step_id) < definition.index(state.step)
    ):
        return duplicate(state, f"step {step_id} was answered already")
    return refused(
        state,
        f"saga {state.saga_id} is waiting on step {state.step_id!r}, not {step_id!r}",
    )


def _late(state: SagaState, step: str, status: str) -> Decision:
    return Decision(
        [], [], state, Verdict.LATE, late_reason(state.saga_id, step, status)
    )


def late_reason(saga_id: str, step: str, status: str) -> str:
    """Why a late success is dead-lettered: the one wording for the core and for
    a host that answers for a saga that already left memory."""
    return (
        f"late success of step {step!r} of saga {saga_id} ({status}), which gave "
        "up on it in doubt and compensated it: the step took effect after all, "
        "and its compensation refunded it or barred it"
    )


def _retry_at(action: Action, attempt: int, now: int, jitter: float) -> int | None:
    if attempt >= action.retry.max_attempts:
        return None
    return now + action.retry.backoff_ms(attempt, jitter)


def _tick(definition: SagaDefinition, state: SagaState, tick: Tick) -> Decision:
    if state.status.terminal or not state.deadline or tick.now < state.deadline:
        return Decision([], [], state)
    decision = Draft(definition, state, tick.now)
    name, attempt = state.step, state.attempt
    step = definition.step(name)
    if state.retrying:
        if state.compensating:
            decision.command_compensation(name, attempt + 1)
        else:
            decision.command_step(definition.index(name), attempt + 1)
        return decision.done()
    if state.compensating:
        assert step.compensation is not None
        tries = attempt - state.spent
        retry_at = _retry_at(step.compensation, tries, tick.now, tick.jitter)
        if retry_at is not None:
            decision.emit(
                CompensationTimedOut(step=name, attempt=attempt, retry_at=retry_at)
            )
        else:
            decision.emit(
                CompensationTimedOut(
                    step=name,
                    attempt=attempt,
                    retry_at=_doubt_retry_at(step.compensation, tries, tick),
                    in_doubt=True,
                )
            )
        return decision.done()
    retry_at = _retry_at(step.action, attempt, tick.now, tick.jitter)
    if retry_at is None and step.retried_until_answered:
        decision.emit(
            StepTimedOut(
                step=name,
                attempt=attempt,
                retry_at=_doubt_retry_at(step.action, attempt, tick),
                in_doubt=True,
            )
        )
        return decision.done()
    decision.emit(StepTimedOut(step=name, attempt=attempt, retry_at=retry_at))
    if retry_at is None:
        decision.fail_forward(f"{name}: no reply after {attempt} attempt(s)")
    return decision.done()


def _doubt_retry_at(action: Action, attempt: int, tick: Tick) -> int:
    """When a command in doubt goes out again: the backoff keeps growing to its
    cap, so a participant that is down is asked at the policy's slowest pace."""
    return tick.now + action.retry.backoff_ms(attempt, tick.jitter)


def pending_command(
    definition: SagaDefinition, state: SagaState, now: int
) -> Send | None:
    """The command the saga is waiting on, rebuilt: what a host re-sends after a
    restart, since it cannot know whether the send before the crash went out.
    Same messageId as the original; ``None`` if nothing is awaited."""
    if state.status.terminal or state.retrying or not state.deadline:
        return None
    definition = definition.at(state.version)
    step = definition.step(state.step)
    action = step.compensation if state.compensating else step.action
    assert action is not None
    decision = Draft(definition, state, now)
    return Send(
        action.command_topic, decision.message(state.step_id, action, state.attempt)
    )
