"""The wire messages: msgspec Structs are the single source of truth for the JSON.

Python attributes are snake_case; on the wire they are the camelCase names the
platform's services know (``messageId``, ``sagaId``, ``stepId``, ``type``,
``timestamp``, ``targetService``, ...). The ``type`` field is the tag of the
:data:`Message` union: its values are stable strings that never follow a
Python class name, so renaming a class cannot break a stored log.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from events.errors import (
    InvalidFieldError,
    MessageDecodeError,
    MessageTooLargeError,
    MissingFieldError,
    NotJsonError,
    UnknownMessageTypeError,
)

DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# A timestamp must carry its zone: a naive time means different instants on
# different hosts, which would corrupt latency figures and timeouts.
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class BaseMessage(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="type",
):
    """Fields every message carries. ``type`` is the union tag (see subclasses)."""

    message_id: NonEmpty
    saga_id: NonEmpty
    step_id: str
    timestamp: Timestamp


class CommandMessage(BaseMessage, frozen=True, kw_only=True, tag="command"):
    """An instruction from the orchestrator to a participant service."""

    target_service: NonEmpty
    payload: dict[str, Any] = {}
    metadata: dict[str, str] = {}


class EventMessage(BaseMessage, frozen=True, kw_only=True, tag="event"):
    """A participant's answer to a command: success, or failure with an error."""

    success: bool
    payload: dict[str, Any] = {}
    error: str | None = None


Message: TypeAlias = CommandMessage | EventMessage
#: The tag strings of the union, as they appear in ``type`` on the wire.
MESSAGE_TYPES: Final = ("command", "event")

_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def _field_of(error: msgspec.ValidationError) -> tuple[str | None, bool]:
    """The JSON path an error names (``None`` for the whole document) and
    whether the error is a missing field."""
    text = str(error)
    match = _PATH.search(text)
    path = match.group("path").replace("[...]", "") if match else ""
    missing = _MISSING.match(text)
    if missing:
        name = missing.group("name")
        return (f"{path}.{name}" if path else name), True
    return (path or None), False


class MessageCodec:
    """Encodes and decodes :data:`Message` with a size limit; built once, reused.

    ``decode`` raises a typed :class:`~events.errors.MessageDecodeError` that keeps
    the raw bytes; ``encode`` refuses a message over the limit rather than let a
    consumer reject it later.
    """

    __slots__ = ("_decoder", "_encoder", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._encoder = msgspec.json.Encoder()
        self._decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)

    def encode(self, message: Message) -> bytes:
        raw = self._encoder.encode(message)
        if len(raw) > self.max_bytes:
            raise MessageTooLargeError(len(raw), self.max_bytes, raw)
        return raw

    def decode(self, raw: bytes) -> Message:
        if len(raw) > self.max_bytes:
            raise MessageTooLargeError(len(raw), self.max_bytes, raw)
        try:
            return self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise _classify(exc, raw) from None
        except msgspec.DecodeError as exc:
            raise NotJsonError(f"not JSON: {exc}", raw) from None


def _classify(error: msgspec.ValidationError, raw: bytes) -> MessageDecodeError:
    field, missing = _field_of(error)
    reason = _PATH.sub("", str(error))
    if field == "type":
        if missing:
            return UnknownMessageTypeError("the field 'type' is missing", raw, field)
        return UnknownMessageTypeError(
            f"unknown message type ({reason}); expected one of "
            f"{', '.join(repr(t) for t in MESSAGE_TYPES)}",
            raw,
            field,
        )
    if missing:
        return MissingFieldError(f"required field {field!r} is missing", raw, field)
    if field is None:
        return InvalidFieldError(f"the message must be a JSON object: {reason}", raw)
    return InvalidFieldError(f"{reason}", raw, field)
