"""Fuzzing the wire decoders: whatever the bytes, a typed error or a value.

A decoder that raises anything but :class:`MessageDecodeError` escapes the
guards that dead-letter bad records (``RecursionError`` on deep nesting did,
and stalled the router). Derandomized, so a failure is the same every day.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from kafka.consumer.fetcher import ConsumerRecord

from events.errors import MessageDecodeError, TooDeeplyNestedError
from events.transport.broker import EmbeddedBroker
from events.transport.listener import KafkaEventListener
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from tests.conftest import settings_for
from tests.fuzzing import documents

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CODEC = MessageCodec()
LETTERS = DeadLetterCodec()
MESSAGES = [
    CODEC.encode(
        CommandMessage(
            message_id="s-1:process_payment:1",
            saga_id="s-1",
            step_id="process_payment",
            timestamp=NOW,
            target_service="payment",
            payload={"userId": "u-1", "amount": 250, "tags": ["a", {"b": [1.5]}]},
            metadata={"idempotencyKey": "s-1:process_payment"},
        )
    ),
    CODEC.encode(
        EventMessage(
            message_id="r-1",
            saga_id="s-1",
            step_id="verify_user",
            timestamp=NOW,
            success=False,
            payload={"reasons": [{"code": 7}]},
            error="user is blocked",
        )
    ),
]
LETTER = LETTERS.encode(
    DeadLetter(
        topic="payment.commands.process",
        partition=3,
        offset=41,
        error="not JSON",
        dead_at=NOW,
        source="payment-service",
        payload=MESSAGES[0],
        key="s-1",
        saga_id="s-1",
        payload_size=len(MESSAGES[0]),
    )
)
FUZZ = settings(derandomize=True, max_examples=1_500, deadline=None)


@FUZZ
@given(documents(MESSAGES))
def test_message_codec_raises_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MessageDecodeError):
        CODEC.decode(raw)


@FUZZ
@given(documents([LETTER]))
def test_dead_letter_codec_raises_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MessageDecodeError):
        LETTERS.decode(raw)


@pytest.fixture(scope="module")
def listener(broker: EmbeddedBroker) -> Iterator[KafkaEventListener]:
    with KafkaEventListener(
        settings_for(broker.bootstrap),
        ["payment.commands.process"],
        list,
        group_id="fuzz-listener",
    ) as running:
        yield running


def record(value: bytes | None, key: bytes | None = b"s-1") -> ConsumerRecord:
    return ConsumerRecord(
        "payment.commands.process", 3, -1, 41, 0, 0, key, value, [], None, -1, -1, -1
    )


@pytest.mark.broker
def test_listener_delivers_every_record_with_a_message_or_a_typed_error(
    listener: KafkaEventListener,
) -> None:
    @FUZZ
    @given(documents(MESSAGES))
    def check(raw: bytes) -> None:
        delivery = listener._delivery(record(raw))
        assert delivery.value == raw
        assert (delivery.message is None) != (delivery.error is None)
        assert delivery.error is None or isinstance(delivery.error, MessageDecodeError)

    check()
    deep = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    delivery = listener._delivery(record(deep, key=b"\xff\xfe"))
    assert isinstance(delivery.error, TooDeeplyNestedError)
    assert delivery.key == "\ufffd\ufffd"
    empty = listener._delivery(record(None, key=None))
    assert empty.value == b"" and empty.error is not None


def test_the_bound_holds_where_msgspec_alone_would_recurse() -> None:
    deep = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    for decode in (CODEC.decode, LETTERS.decode):
        with pytest.raises(TooDeeplyNestedError, match="refused before decoding"):
            decode(deep)
    # Bad UTF-8 inside a string is a UnicodeDecodeError from msgspec itself.
    with pytest.raises(MessageDecodeError, match="not JSON"):
        CODEC.decode(MESSAGES[0].replace(b"u-1", b"\xed\xa0\x80"))
