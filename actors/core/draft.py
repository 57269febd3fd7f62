"""A decision in the making: the moves every kind of input is decided with.

:class:`Draft` is what the decider (:mod:`~actors.core.decide`) and the
operator's requests (:mod:`~actors.core.interventions`) share: command the next
step, go forward after a success, fail forward into compensation, compensate
the next completed step, and build each command's message from the saga's
input and replies. Pure: the time arrives with the input.
"""

from __future__ import annotations

from datetime import UTC, datetime

from actors.core.definitions import COMPENSATE, Action, SagaDefinition, render
from actors.core.inputs import Decision, Send
from actors.core.saga_events import (
    AnySagaEvent,
    CompensationCommanded,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    SagaRejected,
    StepCommanded,
    StepFailed,
)
from actors.core.state import SagaState, evolve, message_id
from actors.errors import PayloadError
from events.wire.messages import CommandMessage


class Draft:
    """A decision being made: collects its events, folding each into the state
    as it goes, so later choices in the same decision see exactly what replay
    will see, and the commands they send."""

    def __init__(
        self, definition: SagaDefinition, state: SagaState | None, now: int
    ) -> None:
        self.definition = definition
        self.state = state
        self.now = now
        self.events: list[AnySagaEvent] = []
        self.commands: list[Send] = []

    @property
    def current(self) -> SagaState:
        assert self.state is not None, "a saga_started event comes first"
        return self.state

    def emit(self, event: AnySagaEvent) -> None:
        self.state = evolve(self.state, event)
        self.events.append(event)

    def done(self) -> Decision:
        return Decision(self.events, self.commands, self.state)

    # -- forward ----------------------------------------------------------

    def command_step(self, index: int, attempt: int) -> None:
        step = self.definition.steps[index]
        try:
            message = self.message(step.name, step.action, attempt)
        except PayloadError as exc:
            self.emit(StepFailed(step=step.name, attempt=attempt, error=str(exc)))
            self.fail_forward(f"{step.name}: {exc}")
            return
        self.emit(
            StepCommanded(
                step=step.name,
                attempt=attempt,
                message_id=message.message_id,
                deadline=self.now + step.action.timeout_ms,
            )
        )
        self.commands.append(Send(step.action.command_topic, message))

    def step_succeeded(self) -> None:
        index = self.definition.index(self.current.step)
        if index + 1 == len(self.definition.steps):
            self.emit(SagaCompleted())
        elif self.current.cancel:
            # The cancel waited for this step's answer: it stops here.
            self.fail_forward(f"cancelled: {self.current.cancel}")
        else:
            self.command_step(index + 1, 1)

    def fail_forward(self, reason: str) -> None:
        if self.to_compensate():
            self.compensate_next(reason)
        else:
            self.emit(SagaRejected(reason=reason))

    # -- compensation -----------------------------------------------------

    def to_compensate(self) -> list[str]:
        """Steps with a compensation not yet done, newest first: the completed
        ones, and before them a step whose outcome is unknown (it timed out)."""
        state = self.current
        candidates = [state.doubtful] if state.doubtful else []
        candidates.extend(reversed(state.replies))
        return [
            name
            for name in candidates
            if self.definition.step(name).compensation is not None
            and name not in state.compensated
        ]

    def compensate_next(self, reason: str) -> None:
        pending = self.to_compensate()
        if not pending:
            self.emit(SagaCompensated(reason=reason or self.current.reason))
            return
        self.command_compensation(pending[0], 1)

    def command_compensation(self, name: str, attempt: int) -> None:
        action = self.definition.step(name).compensation
        assert action is not None
        try:
            message = self.message(name + COMPENSATE, action, attempt)
        except PayloadError as exc:
            self.emit(
                SagaFailed(reason=f"compensation of {name} cannot be built: {exc}")
            )
            return
        self.emit(
            CompensationCommanded(
                step=name,
                attempt=attempt,
                message_id=message.message_id,
                deadline=self.now + action.timeout_ms,
            )
        )
        self.commands.append(Send(action.command_topic, message))

    def message(self, step_id: str, action: Action, attempt: int) -> CommandMessage:
        state = self.current
        payload = render(action.payload, state.saga_id, state.input, state.replies)
        return CommandMessage(
            message_id=message_id(state.saga_id, step_id, attempt),
            saga_id=state.saga_id,
            step_id=step_id,
            timestamp=datetime.fromtimestamp(self.now / 1000, UTC),
            target_service=action.service,
            payload=payload,
            metadata={
                "sagaType": state.saga_type,
                "attempt": str(attempt),
                "replyTopic": action.reply_topic,
                # The same for every attempt: a participant that applied attempt 1
                # late must not apply attempt 2 again.
                "idempotencyKey": f"{state.saga_id}:{step_id}",
            },
        )
