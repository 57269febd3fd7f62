"""Start requests: the messages on ``saga.requests``.

A request is a :class:`~events.wire.messages.CommandMessage` addressed to the
orchestrator (``targetService`` ``saga-orchestrator``, ``stepId`` ``start``)
whose payload names the saga type and carries its input::

    {"type": "command", "messageId": "...", "sagaId": "s-42", "stepId": "start",
     "timestamp": "2026-11-25T10:00:00Z", "targetService": "saga-orchestrator",
     "payload": {"sagaType": "deposit",
                 "input": {"userId": "u-1", "accountId": "a-1",
                           "amount": 250, "currency": "USD"}}}

Any service can start a saga by writing one, keyed by the sagaId.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from actors.core.definitions import SagaDefinition
from actors.errors import InvalidRequestError, UnknownSagaTypeError
from events.wire.messages import CommandMessage, Message

ORCHESTRATOR: Final = "saga-orchestrator"
START_STEP: Final = "start"


class StartRequest(msgspec.Struct, frozen=True, rename="camel"):
    saga_type: str
    input: dict[str, Any]


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
    if not isinstance(message, CommandMessage):
        raise InvalidRequestError(
            "saga.requests takes commands (type 'command'), got an event"
        )
    try:
        request = msgspec.convert(message.payload, StartRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(
            f"start request payload is invalid: {exc} (expected "
            '{"sagaType": "...", "input": {...}})'
        ) from None
    definition = definitions.get(request.saga_type)
    if definition is None:
        raise UnknownSagaTypeError(
            f"unknown saga type {request.saga_type!r}; this orchestrator runs "
            f"{', '.join(sorted(definitions))}"
        )
    return definition, request


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
