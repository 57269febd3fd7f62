"""Where a consumer stands against its log, and the sign that the log lost records.

A healthy log never ends below an offset a reader has reached. When it does (a
broker restarted empty, a truncated partition), Kafka answers a fetch with
"offset out of range" (kafka-python raises it, with no reset policy) while the
embedded broker answers with no records and the lower high watermark: both are
turned into :class:`LogLostError` here, so no consumer jumps back to the start
of a log without a word.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import LogTruncationError, OffsetOutOfRangeError

from events.errors import LogLostError

#: What kafka-python raises for a position the log no longer has.
LOST: tuple[type[Exception], ...] = (OffsetOutOfRangeError, LogTruncationError)


def lost(exc: Exception) -> LogLostError:
    """kafka-python's out-of-range or truncation error, said plainly."""
    return LogLostError(f"positions out of the log's range: {exc}")


def check_positions(consumer: KafkaConsumer, tps: Iterable[TopicPartition]) -> None:
    """Raise :class:`LogLostError` for a partition whose position is past its
    high watermark (known once a fetch answered for it)."""
    behind = []
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = consumer.position(tp)
        if position is not None and position > highwater:
            behind.append(
                f"{tp.topic} partition {tp.partition} ends at {highwater}, "
                f"below offset {position} already read"
            )
    if behind:
        raise LogLostError("; ".join(behind))
