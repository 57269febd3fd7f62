"""Read partitions from given offsets up to their end, without a consumer group.

For restoring state from a log: the reader assigns the partitions, seeks, and
stops at each partition's high watermark as reported by Fetch responses (the
end offset both Kafka and the embedded broker get right; see DESIGN.md on
ListOffsets). One :class:`PartitionReader` keeps one consumer for many reads:
building a consumer costs a connection and a metadata round trip.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from events.errors import EventsError
from events.transport.clients import Closing, connect, consumer_options
from events.transport.positions import LOST, LossCheck, lost
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Record

#: Restores read whole partitions: fetch big slices at a time.
_FETCH_BYTES = 16 * 1024 * 1024


class PartitionReader(Closing):
    def __init__(self, settings: KafkaSettings, timeout_s: float = 30.0) -> None:
        self._timeout_s = timeout_s
        self._grace_ms = settings.consumer.loss_grace_ms
        options = consumer_options(settings, None) | {
            "max_partition_fetch_bytes": _FETCH_BYTES,
            "fetch_max_bytes": 4 * _FETCH_BYTES,
            "fetch_max_wait_ms": 50,
            "max_poll_records": 10_000,
        }
        self._consumer = connect(KafkaConsumer, settings, options)

    def ends(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Each partition's high watermark, read from a Fetch response.

        ListOffsets' answer is used only as a starting position: it is a valid
        offset at or below the end on every broker, and a fetch from there
        returns the true high watermark.
        """
        tps = [TopicPartition(*tp) for tp in partitions]
        if not tps:
            return {}
        consumer = self._consumer
        try:
            _assign_afresh(consumer, tps)
            for tp, offset in consumer.end_offsets(tps).items():
                consumer.seek(tp, offset)
            deadline = time.monotonic() + self._timeout_s
            pending = set(tps)
            while pending:
                consumer.poll(timeout_ms=100, max_records=1, update_offsets=False)
                pending = {tp for tp in pending if consumer.highwater(tp) is None}
                if pending and time.monotonic() > deadline:
                    raise EventsError(
                        f"no fetch answer for {len(pending)} partitions within "
                        f"{self._timeout_s:g} s (first: {min(pending)})"
                    )
            return {TP(*tp): int(consumer.highwater(tp)) for tp in tps}
        except KafkaError as exc:
            raise EventsError(f"reading end offsets failed: {exc}") from exc

    def starts(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Each partition's log start: the offset of its oldest record kept
        (0 until retention deletes a record)."""
        tps = [TopicPartition(*tp) for tp in partitions]
        if not tps:
            return {}
        try:
            found = self._consumer.beginning_offsets(tps)
        except KafkaError as exc:
            raise EventsError(f"reading log start offsets failed: {exc}") from exc
        return {TP(*tp): int(offset) for tp, offset in found.items()}

    def read(
        self, starts: Mapping[TP, int], limit: int | None = None
    ) -> Generator[Record, None, None]:
        """Yield each partition's records from its start offset to its end (or
        ``limit`` records per partition), in offset order per partition.

        The end is the high watermark at the first fetch that answers for the
        partition: records appended while reading may or may not be included.
        Raises :class:`EventsError` after ``timeout_s`` without progress.
        """
        if not starts:
            return
        consumer = self._consumer
        positions = {TopicPartition(*tp): offset for tp, offset in starts.items()}
        # A start is an offset the caller read before (a snapshot's, say): a
        # log that now ends below it lost records, never a quiet partition.
        check = LossCheck(self._grace_ms)
        for tp, offset in starts.items():
            check.reach(tp, offset)
        try:
            _assign_afresh(consumer, list(positions))
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
            ends: dict[TopicPartition, int] = {}
            taken = dict.fromkeys(positions, 0)
            pending = set(positions)
            last_progress = time.monotonic()
            while pending:
                batches = consumer.poll(timeout_ms=100)
                short = check.short(consumer)
                for tp, records in batches.items():
                    end = ends.get(tp)
                    for record in records:
                        if tp not in pending or (
                            end is not None and record.offset >= end
                        ):
                            break
                        yield record_of(record)
                        check.reach(TP(*tp), record.offset + 1)
                        taken[tp] += 1
                        if limit is not None and taken[tp] >= limit:
                            pending.discard(tp)
                for tp in list(pending):
                    if TP(*tp) in short:
                        continue  # its end is in doubt: wait, or the check says
                    if tp not in ends:
                        highwater = consumer.highwater(tp)
                        if highwater is None:
                            continue
                        ends[tp] = int(highwater)
                    if consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                consumer.pause(*(tp for tp in positions if tp not in pending))
                if batches or short:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self._timeout_s:
                    raise EventsError(
                        f"reading {len(pending)} partition(s) to their end made no "
                        f"progress for {self._timeout_s:g} s (first: {min(pending)})"
                    )
        except LOST as exc:
            raise lost(exc) from exc
        except KafkaError as exc:
            raise EventsError(f"reading partitions failed: {exc}") from exc
        finally:
            consumer.resume(*positions)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def read_to_end(
    settings: KafkaSettings,
    starts: Mapping[TP, int],
    *,
    timeout_s: float = 30.0,
) -> Generator[Record, None, None]:
    """One-off :meth:`PartitionReader.read` with its own consumer."""
    with PartitionReader(settings, timeout_s) as reader:
        yield from reader.read(starts)


class PartitionTail(Closing):
    """Follow partitions from given offsets as records arrive, without a group.

    For watching a log live (``saga run`` follows ``saga.events``): unlike
    :class:`PartitionReader` it has no end, and every :meth:`poll` returns what
    arrived since the last.
    """

    def __init__(self, settings: KafkaSettings, starts: Mapping[TP, int]) -> None:
        self._consumer = connect(
            KafkaConsumer, settings, consumer_options(settings, None)
        )
        self._check = LossCheck(settings.consumer.loss_grace_ms)
        self._consumer.assign([TopicPartition(*tp) for tp in starts])
        for tp, offset in starts.items():
            self._consumer.seek(TopicPartition(*tp), offset)
            self._check.reach(tp, offset)

    def poll(self, timeout_ms: int) -> list[Record]:
        """The records that arrived, waiting up to ``timeout_ms`` for the first."""
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except LOST as exc:
            raise lost(exc) from exc
        except KafkaError as exc:
            raise EventsError(f"following partitions failed: {exc}") from exc
        found = [record_of(r) for records in batches.values() for r in records]
        for record in found:
            self._check.reach(record.tp, record.offset + 1)
        self._check.short(self._consumer)
        return found

    def caught_up(self) -> bool:
        """Whether every partition has been read to the end the last fetch
        reported (its high watermark; unknown before the first fetch)."""
        consumer = self._consumer
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None or consumer.position(tp) < end:
                return False
        return True

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _assign_afresh(consumer: KafkaConsumer, tps: list[TopicPartition]) -> None:
    """Assign ``tps`` with no state left from an earlier read: kafka-python
    keeps a partition's high watermark across an assignment that keeps it."""
    consumer.assign([])
    consumer.assign(tps)


def record_of(record: ConsumerRecord) -> Record:
    """kafka-python's record as the transport's own :class:`Record`."""
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value or b"",
        record.timestamp,
    )
