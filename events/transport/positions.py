"""Where a consumer stands against its log, and the sign that the log lost records.

A healthy log never ends below an offset a reader has reached. When it does (a
broker restarted empty, a truncated partition), Kafka answers a fetch past the
log's end with "offset out of range" (kafka-python raises it, with no reset
policy) while the embedded broker answers with no records and the lower high
watermark. Both become :class:`LogLostError` here, so no consumer jumps back to
the start of a log without a word.

A high watermark below what was read is a suspicion first, not a proof: right
after a leader election on a replicated cluster, the new leader's high
watermark may trail the old one's for a moment (up to the replicas' lag bound).
So the loss is declared only once the log has stayed short for the grace
period (``kafka.consumer.loss_grace_ms``); a log that catches up clears it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import IllegalStateError, LogTruncationError, OffsetOutOfRangeError

from events.errors import LogLostError
from events.transport.types import TP

#: What kafka-python raises for a position the log no longer has.
LOST: tuple[type[Exception], ...] = (OffsetOutOfRangeError, LogTruncationError)


def lost(exc: Exception) -> LogLostError:
    """kafka-python's out-of-range or truncation error, said plainly: an
    out-of-range one names each partition and the offset its log no longer
    has (below its start: retention or a deletion removed records no reader
    had covered yet; above its end: the log lost its tail)."""
    positions = exc.args[0] if exc.args else None
    if isinstance(exc, OffsetOutOfRangeError) and isinstance(positions, dict):
        named = "; ".join(
            f"{tp.topic} partition {tp.partition} has no offset {offset}"
            for tp, offset in sorted(positions.items())
        )
        return LogLostError(
            f"positions out of the log's range: {named} (a log start above it: "
            "retention or a deletion removed records not yet read nor covered "
            "by a snapshot; a log end below it: the log lost its tail)"
        )
    return LogLostError(f"positions out of the log's range: {exc}")


class LossCheck:
    """The offsets a consumer has reached, checked against its log's end."""

    def __init__(
        self, grace_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._grace_s = grace_ms / 1000
        self._clock = clock
        #: Per partition, the offset after the last record read (or a position
        #: the caller knows was read before: a snapshot's, a table's).
        self.reached: dict[TP, int] = {}
        #: Since when each partition's log has ended below what was reached.
        self._short_since: dict[TP, float] = {}

    def reach(self, tp: TP, offset: int) -> None:
        if offset > self.reached.get(tp, -1):
            self.reached[tp] = offset

    def short(self, consumer: KafkaConsumer) -> set[TP]:
        """The partitions whose log now ends below what was reached; raises
        :class:`LogLostError` for those that have for the whole grace period.

        Reads only what the last fetches reported: no request, no wait."""
        now = self._clock()
        found: set[TP] = set()
        gone = []
        for tp, offset in self.reached.items():
            try:
                highwater = consumer.highwater(TopicPartition(*tp))
            except IllegalStateError:
                highwater = None  # not assigned here (now): not this reader's
            if highwater is None or offset <= highwater:
                self._short_since.pop(tp, None)
                continue
            found.add(tp)
            since = self._short_since.setdefault(tp, now)
            if now - since >= self._grace_s:
                gone.append(
                    f"{tp.topic} partition {tp.partition} ends at {highwater}, "
                    f"below offset {offset} already read"
                )
        if gone:
            raise LogLostError("; ".join(gone))
        return found
