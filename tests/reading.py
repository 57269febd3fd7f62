"""Reading topics back in tests: every record of a topic, its replies, its letters.

Through the platform's own reader, from offset 0 to the end, with no group.
"""

from __future__ import annotations

from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.messages import EventMessage, MessageCodec
from events.wire.topics import SAGA_DLQ

_CODEC = MessageCodec()
_LETTERS = DeadLetterCodec()


def read(kafka: KafkaSettings, topic: str, partitions: int = 2) -> list[bytes]:
    """The values of every record on ``topic``, partition by partition."""
    starts = {TP(topic, p): 0 for p in range(partitions)}
    return [r.value for r in read_to_end(kafka, starts)]


def replies(
    kafka: KafkaSettings, topic: str, partitions: int = 2
) -> list[EventMessage]:
    """The replies on ``topic`` (anything else on it is passed over)."""
    return [
        m
        for m in (_CODEC.decode(v) for v in read(kafka, topic, partitions))
        if isinstance(m, EventMessage)
    ]


def letters(kafka: KafkaSettings, partitions: int = 2) -> list[DeadLetter]:
    """Every dead letter on ``saga.dlq``."""
    return [_LETTERS.decode(v) for v in read(kafka, SAGA_DLQ, partitions)]
