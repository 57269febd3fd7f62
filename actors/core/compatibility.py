"""Whether a saga's history still holds under changed definitions: the deploy gate.

A log record holds the events of one decision. The input it reacted to is read
back from them (a start from ``saga_started``, a reply from the step's answer
and the record's ``cause``, a timer from a timeout or a retry, an operator's
request from its event), decided again by the candidate definition on the
state folded from the log before the record, and the events compared with the
logged ones. The first record that differs is the saga's divergence: from
there the candidate would have done something else, so a saga in flight would
go on from a history its definition cannot have written. Times are compared
as the decisions made them (a deadline from the log, whether a retry is due),
not as values: a changed timeout or backoff moves no saga off its path.

The command a saga in flight waits on is compared too: a re-send after a
restart rebuilds it from the definition, so a changed payload would reach the
participant under the same idempotency key.

Pure: no I/O, no clock. Jitter is 0 (it moves only retry times).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from actors.core.decide import decide, pending_command
from actors.core.definitions import COMPENSATE, SagaDefinition
from actors.core.hold import taken
from actors.core.inputs import (
    Cancel,
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
)
from actors.core.saga_events import (
    AnySagaEvent,
    CancelRequested,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    DefinitionMoved,
    HoldReleased,
    LogRecord,
    ReplyHeld,
    RetryRequested,
    SagaFailed,
    SagaHeld,
    SagaStarted,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from actors.core.state import SagaState, replay
from actors.errors import DefinitionError


class Divergence(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where a saga's history and the candidate definition part ways."""

    saga_id: str
    #: The seq of the first event of the record that differs (0: the history
    #: agrees, and the command the saga waits on differs).
    seq: int
    #: What the log holds there, and what the candidate would have logged
    #: (or sent), one line each.
    logged: list[str]
    candidate: list[str]
    reason: str = ""


def check_history(
    history: Iterable[LogRecord],
    candidate: SagaDefinition,
    *,
    on_version: int | None = None,
) -> Divergence | None:
    """The first record of ``history`` the candidate would not have written:
    each saga on the version it started with (or was moved to), or with
    ``on_version`` on that version of the candidate throughout (whether a
    saga moved there by ``saga migrate`` goes on from a history it could
    have written)."""
    pinned = None
    if on_version is not None:
        try:
            # That version alone: the saga on it from the start.
            pinned = msgspec.structs.replace(candidate.at(on_version), previous=())
        except DefinitionError as exc:
            first = next(iter(history), None)
            if first is None:
                return None
            why = f"the candidate fails on it: {type(exc).__name__}: {exc}"
            return _divergence(first, [], why)
    state: SagaState | None = None
    for record in history:
        try:
            found = _check_record(state, record, candidate, pinned)
        except Exception as exc:  # the candidate cannot even decide it
            found = _divergence(
                record, [], f"the candidate fails on it: {type(exc).__name__}: {exc}"
            )
        if found is not None:
            return found
        state = replay(state, record)
    return None


def check_next_command(
    state: SagaState, current: SagaDefinition, candidate: SagaDefinition, now: int
) -> Divergence | None:
    """Whether the command ``state`` waits on (and would re-send) differs."""
    before = pending_command(current, state, now)
    try:
        after = pending_command(candidate, state, now)
    except Exception as exc:
        return Divergence(
            saga_id=state.saga_id,
            seq=0,
            logged=[] if before is None else [_command_line(before)],
            candidate=[],
            reason=f"its awaited command cannot be rebuilt: {type(exc).__name__}: "
            f"{exc}",
        )
    if _command(before) == _command(after):
        return None
    return Divergence(
        saga_id=state.saga_id,
        seq=0,
        logged=[] if before is None else [_command_line(before)],
        candidate=[] if after is None else [_command_line(after)],
        reason="the command it waits on would differ when sent again",
    )


def recorded_input(record: LogRecord, definition: SagaDefinition) -> Input:
    """The input the decision in ``record`` reacted to."""
    first = record.events[0]
    saga_id, now = record.saga_id, record.at
    match first:
        case SagaStarted(saga_type=saga_type, input=given):
            return Start(saga_id=saga_id, saga_type=saga_type, input=given, now=now)
        case StepSucceeded(step=step, reply_id=reply_id, payload=payload):
            return _reply(record, definition, step, reply_id, True, payload, None)
        case StepFailed(step=step, reply_id=str() as reply_id, error=error):
            return _reply(record, definition, step, reply_id, False, {}, error)
        case StepCompensated(step=step, reply_id=reply_id):
            return _reply(
                record, definition, step + COMPENSATE, reply_id, True, {}, None
            )
        case CompensationFailed(step=step, reply_id=str() as reply_id, error=error):
            return _reply(
                record, definition, step + COMPENSATE, reply_id, False, {}, error
            )
        case DefinitionMoved(request_id=request_id, reason=reason, operator=who):
            return Migrate(
                saga_id=saga_id,
                request_id=request_id,
                reason=reason,
                operator=who,
                to_version=first.to_version,
                now=now,
            )
        case SagaHeld(origin=origin, reason=reason):
            return Hold(saga_id=saga_id, origin=origin, reason=reason, now=now)
        case ReplyHeld():
            return taken(saga_id, first, now)
        case HoldReleased(replayed=replayed):
            return Release(
                saga_id=saga_id,
                request_id=first.request_id,
                reason=first.reason,
                operator=first.operator,
                origin=first.origin,
                how=first.how,
                reply=None if replayed is None else taken(saga_id, replayed, now),
                now=now,
            )
        case CancelRequested(request_id=request_id, reason=reason, operator=who):
            return Cancel(
                saga_id=saga_id,
                request_id=request_id,
                reason=reason,
                operator=who,
                now=now,
            )
        case RetryRequested(request_id=request_id, reason=reason, operator=who):
            return Retry(
                saga_id=saga_id,
                request_id=request_id,
                reason=reason,
                operator=who,
                now=now,
            )
        case (
            StepTimedOut()
            | CompensationTimedOut()
            | StepCommanded()
            | CompensationCommanded()
            # A retry whose command could not be built.
            | StepFailed(reply_id=None)
            | SagaFailed()
        ):
            return Tick(saga_id=saga_id, now=now)
    raise ValueError(
        f"saga {saga_id} record {record.seq} starts with {type(first).__name__}, "
        "which no input of a decision makes first"
    )


def essence(event: AnySagaEvent) -> dict[str, Any]:
    """An event as a decision made it: its fields, with each time reduced to
    whether there is one (a deadline, a retry due)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    for name in ("deadline", "retryAt"):
        if name in data:
            data[name] = data[name] is not None
    return data


def event_line(event: AnySagaEvent) -> str:
    """One line for a person: the event's tag and what tells it apart."""
    data = essence(event)
    tag = data.pop("type")
    shown = {k: v for k, v in data.items() if k in _SHOWN}
    return " ".join([tag, *(f"{k}={v}" for k, v in shown.items())])


_SHOWN = ("step", "attempt", "error", "reason", "inDoubt", "retryAt")


def _check_record(
    state: SagaState | None,
    record: LogRecord,
    candidate: SagaDefinition,
    pinned: SagaDefinition | None,
) -> Divergence | None:
    """``pinned``: one version alone, the saga decided on it throughout."""
    logged = [essence(e) for e in record.events]
    first = record.events[0]
    if pinned is not None:
        candidate = pinned
        if state is not None:
            state = msgspec.structs.replace(state, version=pinned.version)
        if isinstance(first, SagaStarted):  # 1 is left out of a record
            logged[0] = {k: v for k, v in logged[0].items() if k != "version"}
            if pinned.version != 1:
                logged[0]["version"] = pinned.version
    elif isinstance(first, SagaStarted):
        # Started on the version it logged, as its host started it then.
        candidate = candidate.at(first.version)
    decision = decide(candidate, state, recorded_input(record, candidate))
    if decision.verdict is not Verdict.APPLIED:
        return _divergence(
            record, [], f"the candidate would refuse its input: {decision.reason}"
        )
    if [essence(e) for e in decision.events] == logged:
        return None
    return _divergence(record, decision.events, "the candidate decides otherwise")


def _divergence(
    record: LogRecord, events: list[AnySagaEvent], reason: str
) -> Divergence:
    return Divergence(
        saga_id=record.saga_id,
        seq=record.seq,
        logged=[event_line(e) for e in record.events],
        candidate=[event_line(e) for e in events],
        reason=reason,
    )


def _reply(
    record: LogRecord,
    definition: SagaDefinition,
    step_id: str,
    reply_id: str,
    success: bool,
    payload: dict[str, Any],
    error: str | None,
) -> Reply:
    return Reply(
        saga_id=record.saga_id,
        topic=_reply_topic(record, definition, step_id),
        step_id=step_id,
        message_id=reply_id,
        success=success,
        payload=payload,
        error=error,
        now=record.at,
    )


def _reply_topic(record: LogRecord, definition: SagaDefinition, step_id: str) -> str:
    """The topic the reply came on: the record's cause says (``topic/p/o``);
    a log from before causes were kept is taken at its word: the step's."""
    if record.cause.count("/") >= 2:
        return record.cause.rsplit("/", 2)[0]
    action = definition.action_of(step_id)
    return "" if action is None else action.reply_topic


def _command(send: Send | None) -> tuple[Any, ...] | None:
    if send is None:
        return None
    message = send.message
    return (send.topic, message.message_id, message.payload, message.metadata)


def _command_line(send: Send) -> str:
    payload = msgspec.json.encode(send.message.payload).decode()
    return f"{send.topic} {send.message.message_id} {payload}"
