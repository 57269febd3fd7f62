"""A saga's state: the fold of its events. ``evolve(state, event)`` applies one
saga event and is the only way saga state changes; ``replay`` applies a log
record as a restore does; ``replay_log`` a saga's whole log; ``fold`` folds many events.

Command messageIds are ``<sagaId>:<stepId>:<attempt>``: a re-sent command is
recognisably the same command. A compensation's stepId is ``<step>.compensate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import msgspec

from actors.core.definitions import COMPENSATE
from actors.core.saga_events import (
    AnySagaEvent,
    CancelRequested,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    DefinitionMoved,
    HeldReplyRefused,
    HoldReleased,
    LogRecord,
    ReplyHeld,
    RetryRequested,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    SagaHeld,
    SagaRejected,
    SagaStarted,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from actors.errors import RestoreError


class Status(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self not in (Status.RUNNING, Status.COMPENSATING)


class SagaState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One saga's state: the fold of its events.

    ``step`` is the step being run (or, while compensating, undone) and
    ``attempt`` its current attempt. ``deadline`` (epoch ms, 0 for none) is when
    the saga must act unprompted: when a reply is overdue, or, with ``retrying``,
    when the next attempt goes out. ``replies`` holds each completed step's reply
    payload, in completion order.
    """

    saga_id: str
    saga_type: str
    input: dict[str, Any]
    seq: int = 0
    status: Status = Status.RUNNING
    step: str = ""
    attempt: int = 0
    deadline: int = 0
    retrying: bool = False
    replies: dict[str, dict[str, Any]] = {}
    compensated: tuple[str, ...] = ()
    reason: str = ""
    #: The step whose failure (or final timeout) turned the saga back.
    failed: str = ""
    #: A step that went unanswered to its last attempt: it may have taken
    #: effect, so it is compensated too (its compensation must cope with an
    #: effect that never happened).
    doubtful: str = ""
    #: The messageIds of the replies applied for the current step (a
    #: compensation may be refused several times): the same reply again is a
    #: duplicate even though it names the step being waited on.
    seen: tuple[str, ...] = ()
    #: The ids of the operator's requests applied (cancel, retry): the same
    #: request again is a duplicate.
    requests: tuple[str, ...] = ()
    #: A cancel waiting for the awaited step's answer (that step has no
    #: compensation, so it cannot be given up on): its reason.
    cancel: str = ""
    #: Attempts of the current command made before an operator's retry: they
    #: no longer count against its retry policy.
    spent: int = 0
    #: The origin (``topic/partition/offset``) of the dead-lettered message the
    #: saga is held behind ("" when not held), and the replies held since.
    held: str = ""
    held_replies: tuple[ReplyHeld, ...] = ()
    #: The version of its definition the saga runs on.
    version: int = 1

    @property
    def compensating(self) -> bool:
        return self.status is Status.COMPENSATING

    @property
    def step_id(self) -> str:
        """The wire stepId of the command the saga is waiting on."""
        return self.step + COMPENSATE if self.compensating else self.step

    @property
    def message_id(self) -> str:
        return message_id(self.saga_id, self.step_id, self.attempt)


def message_id(saga_id: str, step_id: str, attempt: int) -> str:
    return f"{saga_id}:{step_id}:{attempt}"


def awaits(state: SagaState, command_id: str) -> bool:
    """Whether ``command_id`` is an attempt of the command the saga waits on:
    every attempt up to the current one went out (or may have)."""
    if state.status.terminal:
        return False
    prefix = f"{state.saga_id}:{state.step_id}:"
    if not command_id.startswith(prefix):
        return False
    attempt = command_id[len(prefix) :]
    return attempt.isdigit() and 1 <= int(attempt) <= state.attempt


def evolve(state: SagaState | None, event: AnySagaEvent) -> SagaState:
    """Apply one event. The only way saga state changes."""
    if state is None:
        if not isinstance(event, SagaStarted):
            raise ValueError(f"a saga's first event must be saga_started, got {event}")
        return SagaState(
            saga_id=event.saga_id,
            saga_type=event.saga_type,
            input=event.input,
            seq=1,
            version=event.version,
        )
    replace = msgspec.structs.replace
    seq = state.seq + 1
    match event:
        case StepCommanded(step=step, attempt=attempt, deadline=deadline):
            return replace(
                state,
                seq=seq,
                step=step,
                attempt=attempt,
                deadline=deadline,
                retrying=False,
                seen=state.seen if attempt > 1 else (),
                spent=state.spent if attempt > 1 else 0,
            )
        case StepSucceeded(step=step, payload=payload, reply_id=reply_id):
            return replace(
                state,
                seq=seq,
                replies={**state.replies, step: payload},
                deadline=0,
                seen=(*state.seen, reply_id),
            )
        case StepFailed(step=step, error=error, reply_id=reply_id):
            return replace(
                state,
                seq=seq,
                reason=error,
                deadline=0,
                failed=step,
                seen=state.seen if reply_id is None else (*state.seen, reply_id),
            )
        case StepTimedOut(step=step, retry_at=retry_at):
            waiting = _waiting(state, seq, retry_at, "")
            if retry_at:
                return waiting
            return replace(waiting, failed=step, doubtful=step)
        case CompensationTimedOut(retry_at=retry_at):
            return _waiting(state, seq, retry_at, "")
        case CompensationFailed(retry_at=retry_at, error=error, reply_id=reply_id):
            waiting = _waiting(state, seq, retry_at, error)
            if reply_id is None:
                return waiting
            return replace(waiting, seen=(*state.seen, reply_id))
        case CompensationCommanded(step=step, attempt=attempt, deadline=deadline):
            return replace(
                state,
                seq=seq,
                status=Status.COMPENSATING,
                step=step,
                attempt=attempt,
                deadline=deadline,
                retrying=False,
                seen=state.seen if attempt > 1 else (),
                spent=state.spent if attempt > 1 else 0,
            )
        case StepCompensated(step=step, reply_id=reply_id):
            return replace(
                state,
                seq=seq,
                compensated=(*state.compensated, step),
                deadline=0,
                seen=(*state.seen, reply_id),
            )
        case (
            CancelRequested()
            | RetryRequested()
            | DefinitionMoved()
            | SagaHeld()
            | ReplyHeld()
            | HoldReleased()
            | HeldReplyRefused()
        ):
            return _requested(state, seq, event)
        case SagaCompleted():
            return replace(state, seq=seq, status=Status.COMPLETED, deadline=0)
        case SagaCompensated(reason=reason):
            return _ended(state, seq, Status.COMPENSATED, reason)
        case SagaRejected(reason=reason):
            return _ended(state, seq, Status.REJECTED, reason)
        case SagaFailed(reason=reason):
            return _ended(state, seq, Status.FAILED, reason)
        case SagaStarted():
            raise ValueError(f"saga {state.saga_id} started twice")
    raise TypeError(f"not a saga event: {event!r}")


def _requested(state: SagaState, seq: int, event: AnySagaEvent) -> SagaState:
    """An operator's request, or a hold behind a dead letter, applied."""
    replace = msgspec.structs.replace
    match event:
        case CancelRequested(request_id=request_id, reason=reason, abandoned=""):
            requests = (*state.requests, request_id)
            if state.status is Status.RUNNING:
                return replace(state, seq=seq, requests=requests, cancel=reason)
            return replace(state, seq=seq, requests=requests)
        case CancelRequested(request_id=request_id, reason=reason, abandoned=step):
            return replace(
                state,
                seq=seq,
                requests=(*state.requests, request_id),
                deadline=0,
                retrying=False,
                failed=step,
                doubtful=step,
                reason=f"cancelled: {reason}",
            )
        case RetryRequested(request_id=request_id, reason=reason, spent=spent):
            return replace(
                state,
                seq=seq,
                requests=(*state.requests, request_id),
                status=Status.COMPENSATING,
                spent=spent,
                reason=f"retried: {reason}",
            )
        case DefinitionMoved(request_id=request_id, to_version=version):
            return replace(
                state,
                seq=seq,
                requests=(*state.requests, request_id),
                version=version,
            )
        case SagaHeld(origin=origin):
            return replace(state, seq=seq, held=origin)
        case ReplyHeld():
            return replace(state, seq=seq, held_replies=(*state.held_replies, event))
        case HoldReleased(request_id=request_id):
            return replace(
                state,
                seq=seq,
                requests=(*state.requests, request_id),
                held="",
                held_replies=(),
            )
        case HeldReplyRefused():
            return replace(state, seq=seq)
    raise TypeError(f"not a request or a hold: {event!r}")


def _waiting(state: SagaState, seq: int, retry_at: int | None, error: str) -> SagaState:
    reason = error or state.reason
    if retry_at is None:
        return msgspec.structs.replace(
            state, seq=seq, deadline=0, retrying=False, reason=reason
        )
    return msgspec.structs.replace(
        state, seq=seq, deadline=retry_at, retrying=True, reason=reason
    )


def _ended(state: SagaState, seq: int, status: Status, reason: str) -> SagaState:
    return msgspec.structs.replace(
        state, seq=seq, status=status, deadline=0, retrying=False, reason=reason
    )


def replay(state: SagaState | None, record: LogRecord) -> SagaState | None:
    """Apply one log record, as a restore does. A record at or below the state's
    last event was applied already (a snapshot covers it) and is skipped; one
    that skips events means the log lost records, and raises."""
    seq = 0 if state is None else state.seq
    if record.seq <= seq:
        return state
    if record.seq != seq + 1:
        raise RestoreError(
            f"saga {record.saga_id} jumps from event {seq} to {record.seq}: the log "
            "is missing records"
        )
    for event in record.events:
        state = evolve(state, event)
    return state


def replay_log(records: Iterable[LogRecord]) -> SagaState | None:
    """A saga's state from its log records, in order (``None`` for none)."""
    state: SagaState | None = None
    for record in records:
        state = replay(state, record)
    return state


def fold(events: Iterable[AnySagaEvent], state: SagaState | None = None) -> SagaState:
    """The state after ``events``, starting from ``state`` (a snapshot) or nothing."""
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ValueError("no events to fold")
    return state
