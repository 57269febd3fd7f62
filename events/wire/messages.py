"""The wire messages: msgspec Structs are the single source of truth for the JSON.

Python attributes are snake_case; on the wire they are the camelCase names the
platform's services know (``messageId``, ``sagaId``, ``stepId``, ``type``,
``timestamp``, ``targetService``, ...). The ``type`` field is the tag of the
:data:`Message` union: its values are stable strings that never follow a
Python class name, so renaming a class cannot break a stored log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, TypeAlias, TypeVar

import msgspec

from events.errors import (
    InvalidFieldError,
    MessageDecodeError,
    MessageTooLargeError,
    MissingFieldError,
    NotJsonError,
    UnknownMessageTypeError,
)
from events.wire.nesting import MAX_DEPTH, check_depth

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
    #: The messageId of the command this answers. Optional on the wire (older
    #: logs and outside services omit it); when present, the saga accepts the
    #: reply only if it sent that command.
    command_id: str | None = None


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
    the raw bytes, and refuses a document nested deeper than
    :data:`~events.wire.nesting.MAX_DEPTH` before decoding it; ``encode`` refuses a
    message over the limit rather than let a consumer reject it later.
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
        return decode_json(self._decoder, raw, classify=_classify)


T = TypeVar("T")
#: Turns a schema error into the typed error a caller reports.
Classify: TypeAlias = Callable[[msgspec.ValidationError, bytes], MessageDecodeError]


def decode_json(
    decoder: msgspec.json.Decoder[T],
    raw: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    classify: Classify | None = None,
) -> T:
    """``decoder.decode(raw)`` with the nesting bounded, raising only a typed
    :class:`~events.errors.MessageDecodeError` (that keeps the raw bytes).

    msgspec also raises ``UnicodeDecodeError`` (bad UTF-8 in a string) and, past
    the nesting bound, ``RecursionError``; a caller that catches the typed errors
    must never meet those. ``classify`` names a schema error better than the
    generic wording, where the caller knows its schema.
    """
    check_depth(raw, max_depth)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise (classify or _invalid)(exc, raw) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise NotJsonError(f"not JSON: {exc}", raw) from None
    except RecursionError:
        # Within the bound, but the calling thread's stack was already deep.
        raise InvalidFieldError(
            "too deeply nested to decode on this stack", raw
        ) from None
    except (ValueError, OverflowError) as exc:
        raise InvalidFieldError(f"cannot decode: {exc!r}", raw) from None


def _invalid(error: msgspec.ValidationError, raw: bytes) -> MessageDecodeError:
    field, missing = _field_of(error)
    if missing:
        return MissingFieldError(f"required field {field!r} is missing", raw, field)
    return InvalidFieldError(_PATH.sub("", str(error)), raw, field)


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
    if field is None and not missing:
        return InvalidFieldError(f"the message must be a JSON object: {reason}", raw)
    return _invalid(error, raw)
