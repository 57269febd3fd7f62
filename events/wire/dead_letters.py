"""Dead letters: what lands on ``saga.dlq``, and why.

A dead letter keeps the original record exactly as it arrived (``payload`` is
the raw bytes, base64 in JSON) with its origin, so it can be inspected and sent
back to its topic unchanged. What an operator did with a letter (replayed it,
resolved it) is a :class:`LetterAction` on ``saga.dlq.actions``: the queue
itself is never rewritten.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from events.wire.messages import CommandMessage, Message, Timestamp, decode_json


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A record that could not be processed. ``source`` names who gave up on it."""

    topic: str
    partition: int
    offset: int
    error: str
    dead_at: Timestamp
    source: str
    payload: bytes
    key: str | None = None
    message_id: str | None = None
    saga_id: str | None = None
    attempts: int = 1
    #: The original's size; above ``len(payload)`` when only a prefix was kept.
    payload_size: int = 0
    #: The saga it belongs to, as far as whoever gave up on it knew: the saga's
    #: type, the step the message was for (its stepId: ``<step>.compensate``
    #: for a compensation) and the saga's status at that moment ("" unknown:
    #: a participant knows the type and step from the command, not the status).
    saga_type: str = ""
    step: str = ""
    saga_status: str = ""

    @property
    def origin(self) -> str:
        """Where the original was: ``topic/partition/offset`` (what a saga held
        behind it names)."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def of(
        cls,
        where: tuple[str, int, int],
        key: str | None,
        value: bytes,
        *,
        error: str,
        source: str,
        at: datetime,
        max_message_bytes: int,
        message: Message | None = None,
        attempts: int = 1,
        saga: tuple[str, str] | None = None,
        step: str = "",
    ) -> DeadLetter:
        """The letter for the record at ``where`` (topic, partition, offset).

        Base64 makes the payload a third larger: an original over half the
        record limit is kept in part (its size recorded), or the letter itself
        could not be written; the original stays on its topic at its offset.
        The sagaId is the decoded message's, or else the record's key; the
        step is the message's (else ``step``); ``saga`` (type, status) is what
        the saga's host knows of it, or else the type a command carries.
        """
        topic, partition, offset = where
        saga_type, status = saga if saga is not None else ("", "")
        if not saga_type and isinstance(message, CommandMessage):
            saga_type = message.metadata.get("sagaType", "")
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            error=error,
            dead_at=at,
            source=source,
            payload=value[: max_message_bytes // 2],
            payload_size=len(value),
            key=key,
            message_id=None if message is None else message.message_id,
            saga_id=key if message is None else message.saga_id,
            attempts=attempts,
            saga_type=saga_type,
            step=message.step_id if message is not None else step,
            saga_status=status,
        )


class DeadLetterCodec:
    """``decode`` raises only a typed :class:`~events.errors.MessageDecodeError`."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(DeadLetter)

    def encode(self, letter: DeadLetter) -> bytes:
        return self._encoder.encode(letter)

    def decode(self, raw: bytes) -> DeadLetter:
        return decode_json(self._decoder, raw)


class LetterState(StrEnum):
    """Where a letter stands: ``open`` until an operator replays it (its
    original is sent back) or resolves it (closes it without a replay)."""

    OPEN = "open"
    REPLAYED = "replayed"
    RESOLVED = "resolved"


class LetterAction(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What an operator did with a letter: one record on ``saga.dlq.actions``,
    the letter's durable state. ``letter`` is its ``PARTITION:OFFSET`` on
    ``saga.dlq``; ``sent`` says where a replay's message landed
    (``topic/partition/offset``)."""

    letter: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+:[0-9]+$")]
    state: LetterState
    at: Timestamp
    operator: str = ""
    reason: str = ""
    sent: str = ""


class LetterActionCodec:
    """``decode`` raises only a typed :class:`~events.errors.MessageDecodeError`."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(LetterAction)

    def encode(self, action: LetterAction) -> bytes:
        return self._encoder.encode(action)

    def decode(self, raw: bytes) -> LetterAction:
        return decode_json(self._decoder, raw)
