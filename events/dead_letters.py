"""Dead letters: what lands on ``saga.dlq``, and why.

A dead letter keeps the original record exactly as it arrived (``payload`` is
the raw bytes, base64 in JSON) with its origin, so it can be inspected and sent
back to its topic unchanged.
"""

from __future__ import annotations

import msgspec

from events.messages import Timestamp, decode_json


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
