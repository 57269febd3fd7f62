"""Dead letters: what lands on ``saga.dlq``, and why.

A dead letter keeps the original record exactly as it arrived (``payload`` is
the raw bytes, base64 in JSON) with its origin, so it can be inspected and sent
back to its topic unchanged.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from events.wire.messages import Message, Timestamp, decode_json


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
    ) -> DeadLetter:
        """The letter for the record at ``where`` (topic, partition, offset).

        Base64 makes the payload a third larger: an original over half the
        record limit is kept in part (its size recorded), or the letter itself
        could not be written; the original stays on its topic at its offset.
        The sagaId is the decoded message's, or else the record's key.
        """
        topic, partition, offset = where
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
