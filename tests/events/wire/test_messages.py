"""Round trip and rejection of the wire messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import (
    InvalidFieldError,
    MessageDecodeError,
    MessageTooLargeError,
    MissingFieldError,
    NotJsonError,
    UnknownMessageTypeError,
)
from events.wire.messages import CommandMessage, EventMessage, Message, MessageCodec

CODEC = MessageCodec()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(), json_values, max_size=5)
ids = st.text(min_size=1)
zones = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
timestamps = st.datetimes(timezones=zones)

commands = st.builds(
    CommandMessage,
    message_id=ids,
    saga_id=ids,
    step_id=st.text(),
    timestamp=timestamps,
    target_service=ids,
    payload=payloads,
    metadata=st.dictionaries(st.text(), st.text(), max_size=3),
)
events = st.builds(
    EventMessage,
    message_id=ids,
    saga_id=ids,
    step_id=st.text(),
    timestamp=timestamps,
    success=st.booleans(),
    payload=payloads,
    error=st.none() | st.text(),
)


@settings(max_examples=300, deadline=None)
@given(commands | events)
def test_any_message_survives_the_wire(message: Message) -> None:
    decoded = CODEC.decode(CODEC.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)


def _command() -> CommandMessage:
    return CommandMessage(
        message_id="m-1",
        saga_id="saga-1",
        step_id="verify-user",
        timestamp=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        target_service="user",
        payload={"userId": "u-1"},
        metadata={"attempt": "1"},
    )


def test_wire_uses_the_platforms_camel_case_names() -> None:
    command = json.loads(CODEC.encode(_command()))
    assert set(command) == {
        "type", "messageId", "sagaId", "stepId", "timestamp",
        "targetService", "payload", "metadata",
    }  # fmt: skip
    assert command["type"] == "command"
    assert command["timestamp"] == "2026-11-25T12:00:00Z"
    event = json.loads(
        CODEC.encode(
            EventMessage(
                message_id="m-2",
                saga_id="saga-1",
                step_id="verify-user",
                timestamp=datetime(2026, 11, 25, tzinfo=UTC),
                success=False,
                error="user blocked",
            )
        )
    )
    assert set(event) == {
        "type", "messageId", "sagaId", "stepId", "timestamp",
        "success", "payload", "error", "commandId",
    }  # fmt: skip
    assert event["success"] is False


def test_a_reply_without_command_id_still_decodes() -> None:
    """Older logs and outside services omit ``commandId``: it is optional."""
    raw = (
        b'{"type":"event","messageId":"m-2","sagaId":"s","stepId":"x",'
        b'"timestamp":"2026-11-25T00:00:00Z","success":true}'
    )
    event = CODEC.decode(raw)
    assert isinstance(event, EventMessage) and event.command_id is None


VALID = json.loads(CODEC.encode(_command()))


def _with(**changes: object) -> bytes:
    document = {**VALID, **changes}
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "error", "field"),
    [
        (b"not json at all", NotJsonError, None),
        (b"\xff\xfe\x00", NotJsonError, None),
        (b'{"type": "command",', NotJsonError, None),
        (b"[1, 2, 3]", InvalidFieldError, None),
        (_with(type="withdraw"), UnknownMessageTypeError, "type"),
        (_with(type=...), UnknownMessageTypeError, "type"),
        (_with(sagaId=...), MissingFieldError, "sagaId"),
        (_with(targetService=...), MissingFieldError, "targetService"),
        (_with(sagaId=42), InvalidFieldError, "sagaId"),
        (_with(messageId=""), InvalidFieldError, "messageId"),
        (_with(payload=[1]), InvalidFieldError, "payload"),
        (_with(timestamp="yesterday at noon"), InvalidFieldError, "timestamp"),
        (_with(timestamp=1764072000), InvalidFieldError, "timestamp"),
        (_with(timestamp="2026-11-25T12:00:00"), InvalidFieldError, "timestamp"),
    ],
    ids=[
        "not-json", "not-utf8", "truncated", "not-an-object", "unknown-type",
        "no-type", "missing-sagaId", "missing-targetService", "mistyped-sagaId",
        "empty-messageId", "mistyped-payload", "timestamp-not-a-time",
        "timestamp-a-number", "timestamp-without-zone",
    ],
)  # fmt: skip
def test_bad_input_gets_a_typed_error_naming_the_field(
    raw: bytes, error: type[MessageDecodeError], field: str | None
) -> None:
    with pytest.raises(error) as caught:
        CODEC.decode(raw)
    assert caught.value.field == field
    assert caught.value.raw == raw
    if field is not None:
        assert repr(field) in str(caught.value)


def test_oversized_message_is_refused_both_ways() -> None:
    small = MessageCodec(max_bytes=512)
    big = _with(payload={"blob": "x" * 600})
    with pytest.raises(MessageTooLargeError) as caught:
        small.decode(big)
    assert caught.value.raw == big
    assert caught.value.size == len(big)
    with pytest.raises(MessageTooLargeError):
        small.encode(CODEC.decode(big))
    # The default limit is 1 MiB: the same message passes there.
    assert CODEC.decode(big).saga_id == "saga-1"
    with pytest.raises(MessageTooLargeError):
        CODEC.decode(b" " * (1024 * 1024 + 1))


def test_unknown_extra_fields_are_tolerated_for_forward_compatibility() -> None:
    message = CODEC.decode(_with(traceId="abc"))
    assert message == _command()
