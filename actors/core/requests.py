"""Requests: the messages on ``saga.requests``.

A request is a :class:`~events.wire.messages.CommandMessage` addressed to the
orchestrator (``targetService`` ``saga-orchestrator``, ``stepId`` ``start``)
whose payload names the saga type and carries its input::

    {"type": "command", "messageId": "...", "sagaId": "s-42", "stepId": "start",
     "timestamp": "2026-11-25T10:00:00Z", "targetService": "saga-orchestrator",
     "payload": {"sagaType": "deposit",
                 "input": {"userId": "u-1", "accountId": "a-1",
                           "amount": 250, "currency": "USD"}}}

Any service can start a saga by writing one, keyed by the sagaId.

An operator's request to a running saga has the same shape with ``stepId``
``cancel`` (stop and compensate) or ``retry`` (a ``failed`` saga tries its
compensation again), a payload of ``{"reason": "...", "operator": "..."}``, and
a ``messageId`` of the requester's choosing (it makes the request idempotent)::

    {"type": "command", "messageId": "7f0c...", "sagaId": "s-42",
     "stepId": "cancel", "timestamp": "...", "targetService": "saga-orchestrator",
     "payload": {"reason": "customer withdrew the order", "operator": "ana@desk3"}}

``migrate`` moves a saga onto another version of its definition (a payload of
``{"reason": "...", "operator": "...", "version": 2}``).

``release`` lets a saga held behind a dead letter go on (``saga dlq replay`` or
``resolve`` of that letter): the payload names the letter's ``origin`` and
``how``; a replay carries the message to apply (the letter's, or a fixed one)
as text with the ``topic`` it is a reply on::

    "payload": {"reason": "...", "operator": "...", "origin":
                "payment.events.process/3/120", "how": "replayed", "topic":
                "payment.events.process", "message": "{\"type\": \"event\", ...}"}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import msgspec

from actors.core.definitions import SagaDefinition
from actors.errors import InvalidRequestError, UnknownSagaTypeError
from events.wire.messages import CommandMessage, Message

ORCHESTRATOR: Final = "saga-orchestrator"
START_STEP: Final = "start"
_T = TypeVar("_T")
CANCEL_STEP: Final = "cancel"
RETRY_STEP: Final = "retry"
RELEASE_STEP: Final = "release"
MIGRATE_STEP: Final = "migrate"
#: What each operator's request is called, by its stepId.
OPERATOR_STEPS: Final = (CANCEL_STEP, RETRY_STEP)


class StartRequest(msgspec.Struct, frozen=True, rename="camel"):
    saga_type: str
    input: dict[str, Any]


class OperatorRequest(msgspec.Struct, frozen=True, rename="camel"):
    """A cancel or retry: why, and who asks."""

    reason: str
    operator: str = ""


class ReleaseRequest(OperatorRequest, frozen=True, rename="camel"):
    """Let a held saga go on: the letter it is held behind (``origin``) was
    ``replayed`` (``message``, a reply on ``topic``) or ``resolved``."""

    origin: str = ""
    how: Literal["replayed", "resolved"] = "resolved"
    topic: str = ""
    message: str = ""


def start_message(
    saga_id: str, saga_type: str, input: Mapping[str, Any], timestamp: datetime
) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga_id}:start",
        saga_id=saga_id,
        step_id=START_STEP,
        timestamp=timestamp,
        target_service=ORCHESTRATOR,
        payload=msgspec.to_builtins(StartRequest(saga_type, dict(input))),
    )


def parse_start(
    message: Message, definitions: Mapping[str, SagaDefinition]
) -> tuple[SagaDefinition, StartRequest]:
    """The definition and request a start message asks for, or a typed error."""
    request = _payload(message, StartRequest, '{"sagaType": "...", "input": {...}}')
    definition = definitions.get(request.saga_type)
    if definition is None:
        raise UnknownSagaTypeError(
            f"unknown saga type {request.saga_type!r}; this orchestrator runs "
            f"{', '.join(sorted(definitions))}"
        )
    return definition, request


def operator_message(
    saga_id: str,
    step: str,
    request_id: str,
    request: OperatorRequest,
    timestamp: datetime,
) -> CommandMessage:
    """An operator's ``step`` (``cancel`` or ``retry``) for a saga."""
    if step not in OPERATOR_STEPS:
        raise InvalidRequestError(
            f"an operator's request is one of {', '.join(OPERATOR_STEPS)}, not {step!r}"
        )
    return _to_orchestrator(saga_id, step, request_id, request, timestamp)


def _to_orchestrator(
    saga_id: str,
    step: str,
    request_id: str,
    request: OperatorRequest,
    timestamp: datetime,
) -> CommandMessage:
    """An operator's request on ``saga.requests``, its payload the request."""
    return CommandMessage(
        message_id=request_id,
        saga_id=saga_id,
        step_id=step,
        timestamp=timestamp,
        target_service=ORCHESTRATOR,
        payload=msgspec.to_builtins(request),
    )


class MigrateRequest(OperatorRequest, frozen=True, rename="camel"):
    """Move a saga onto ``version`` of its definition."""

    version: int = 0


def migrate_message(
    saga_id: str, request_id: str, request: MigrateRequest, timestamp: datetime
) -> CommandMessage:
    """The request that moves a saga onto another version of its definition."""
    return _to_orchestrator(saga_id, MIGRATE_STEP, request_id, request, timestamp)


def parse_migrate(message: Message) -> MigrateRequest:
    """The move a message asks for, or a typed error saying what is wrong."""
    request = _payload(
        message, MigrateRequest, '{"reason": "...", "operator": "...", "version": 2}'
    )
    if not request.reason.strip() or request.version < 1:
        raise InvalidRequestError(
            f"migrate request for saga {message.saga_id} must give a reason and "
            "the version (1 or more) to move to"
        )
    return request


def release_message(
    saga_id: str, request_id: str, request: ReleaseRequest, timestamp: datetime
) -> CommandMessage:
    """The request that lets a saga held behind a dead letter go on."""
    return _to_orchestrator(saga_id, RELEASE_STEP, request_id, request, timestamp)


def parse_release(message: Message) -> ReleaseRequest:
    """The release a message carries, or a typed error saying what is wrong."""
    request = _payload(
        message,
        ReleaseRequest,
        '{"reason": "...", "origin": "topic/partition/offset", "how": '
        '"replayed" or "resolved", "topic": "...", "message": "..."}',
    )
    if not request.reason.strip() or not request.origin:
        raise InvalidRequestError(
            f"release request for saga {message.saga_id} must give a reason and "
            "the origin of the letter the saga is held behind"
        )
    if request.how == "replayed" and not (request.topic and request.message):
        raise InvalidRequestError(
            f"release request for saga {message.saga_id} replays a message: it "
            "must carry it (message) and the topic it is a reply on (topic)"
        )
    return request


def parse_operator(message: Message) -> OperatorRequest:
    """The operator's request a cancel or retry message carries, or a typed error."""
    request = _payload(message, OperatorRequest, '{"reason": "...", "operator": "..."}')
    if not request.reason.strip():
        raise InvalidRequestError(
            f"{message.step_id} request for saga {message.saga_id} gives no reason: "
            "an operator's action must say why"
        )
    return request


def _payload(message: Message, shape: type[_T], expected: str) -> _T:
    """The payload of a request on ``saga.requests`` as ``shape``, or a typed
    error saying what was expected."""
    if not isinstance(message, CommandMessage):
        raise InvalidRequestError(
            "saga.requests takes commands (type 'command'), got an event"
        )
    try:
        return msgspec.convert(message.payload, shape)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(
            f"{message.step_id} request payload is invalid: {exc} (expected {expected})"
        ) from None


def check_input(definition: SagaDefinition, input: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequestError` if ``input`` lacks a declared field
    or holds a value its declared type refuses."""
    missing = [name for name in definition.inputs if name not in input]
    if missing:
        raise InvalidRequestError(
            f"saga type {definition.name!r} needs input field(s) "
            f"{', '.join(missing)}; got {', '.join(sorted(input)) or 'none'}"
        )
    problems = definition.input_problems(input)
    if problems:
        raise InvalidRequestError(
            f"saga type {definition.name!r}: input {'; '.join(problems)}"
        )
