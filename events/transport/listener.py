"""``KafkaEventListener``: consume in batches, commit only what was handled.

The listener polls a batch, decodes each record, hands the batch to the handler
and commits, per partition, up to the first record the handler did not report
done. A partition with an unhandled record is rewound to it, so the record comes
back on the next poll (or to whichever member owns the partition after a
rebalance). Nothing is committed that was not handled: at least once, never
lost.

A partition the group never committed on starts where ``start_at`` says (the
consumer's own record of its position, when it keeps one) or else by the
configured ``auto_offset_reset``; any other jump is refused: a position the log
no longer has raises :class:`LogLostError` (see ``events.transport.positions``).
A consumer whose own record is the truth (``own_positions``: the projection
writer, whose DuckDB file may be new on a node it moved to) starts every
partition it is assigned where ``start_at`` says, whatever the group committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import CommitFailedError, KafkaError, NoOffsetForPartitionError

from events.errors import EventsError, LogLostError, MessageDecodeError
from events.transport.clients import Closing, connect, consumer_options
from events.transport.positions import LOST, LossCheck, lost
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.messages import Message, MessageCodec

log = logging.getLogger(__name__)


class Delivery(msgspec.Struct, frozen=True):
    """One consumed record: where it came from, its bytes, and what they decode to.

    Exactly one of ``message`` and ``error`` is set, unless the listener was
    built with ``decode=False`` (then neither: the value is passed on as bytes).
    The raw ``value`` is kept either way, so a record can be dead-lettered
    exactly as it arrived.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    message: Message | None
    error: MessageDecodeError | None = None
    #: The record's Kafka timestamp (epoch ms; -1 when it has none).
    timestamp: int = -1

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


#: Takes a batch, returns the deliveries it handled (any order, any subset).
Handler = Callable[[Sequence[Delivery]], Iterable[Delivery]]

#: Where partitions the group never committed on start (``None``: by policy).
StartAt = Callable[[Iterable[TP]], Mapping[TP, int]]


class _StartOwn(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks each newly assigned partition to the consumer's own position."""

    def __init__(self, consumer: KafkaConsumer, start_at: StartAt, check: LossCheck):
        self._consumer = consumer
        self._start_at = start_at
        self._check = check

    def on_partitions_revoked(self, revoked: object) -> None:
        pass  # nothing is held: every batch is committed as it is handled

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = list(assigned)
        for tp, offset in self._start_at(TP(*tp) for tp in tps).items():
            self._consumer.seek(TopicPartition(*tp), offset)
            self._check.reach(tp, offset)


class KafkaEventListener(Closing):
    """A consumer-group member over ``topics`` with manual commits.

    Drive it with :meth:`run` (until :meth:`stop`), or step it with
    :meth:`poll_once`. Use as a context manager so the group is left cleanly.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        handler: Handler,
        *,
        group_id: str | None = None,
        codec: MessageCodec | None = None,
        decode: bool = True,
        start_at: StartAt | None = None,
        own_positions: bool = False,
        gather_ms: int = 0,
        gather_records: int = 20_000,
    ) -> None:
        """``gather_ms`` above 0 makes one batch of the polls within that long
        after the first record (or until ``gather_records``): a handler whose
        cost is per batch (a transaction) hands fewer, larger ones over."""
        self._settings = settings
        self._gather_ms = gather_ms
        self._gather_records = gather_records
        self._start_at = start_at
        self._check = LossCheck(settings.consumer.loss_grace_ms)
        #: What this member committed, per partition: a group that loses it
        #: (a broker that restarted empty) must not start over unnoticed.
        self._committed: dict[TP, int] = {}
        self._decode = decode
        self._handler = handler
        self._codec = codec or MessageCodec(settings.max_message_bytes)
        self.group_id = group_id or settings.consumer.group_id
        self._stopping = threading.Event()
        self._consumer = connect(
            KafkaConsumer, settings, consumer_options(settings, self.group_id)
        )
        if own_positions and start_at is not None:
            self._consumer.subscribe(
                list(topics), listener=_StartOwn(self._consumer, start_at, self._check)
            )
        else:
            self._consumer.subscribe(list(topics))
        self.handled = 0

    def assignment(self) -> set[TP]:
        return {TP(*tp) for tp in self._consumer.assignment()}

    def wait_for_assignment(self, timeout_s: float = 30.0) -> set[TP]:
        """Join the group: poll (handling whatever arrives) until given partitions."""
        deadline = time.monotonic() + timeout_s
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"group {self.group_id!r} assigned no partitions within "
                    f"{timeout_s:g} s"
                )
            self.poll_once()
        return self.assignment()

    def poll_once(self, timeout_ms: int | None = None) -> int:
        """Poll one batch, handle it, commit what was handled. Returns the count
        of deliveries the handler reported done.

        The broker's and the network's failures raise :class:`EventsError`;
        what the handler raises propagates as it is.
        """
        if timeout_ms is None:
            timeout_ms = self._settings.consumer.poll_timeout_ms
        records = self._poll(timeout_ms)
        if records and self._gather_ms > 0:
            self._gather(records)
        if not records:
            return 0
        try:
            batch = [
                self._delivery(record)
                for partition_records in records.values()
                for record in partition_records
            ]
            done = {d.position for d in self._handler(batch)}
        except BaseException:
            # The consumer's position is past the batch already: rewind it, or
            # a caller that carries on would commit past records never handled.
            for tp, partition_records in records.items():
                self._consumer.seek(tp, partition_records[0].offset)
            raise
        self._commit(records, done)
        self.handled += len(done)
        return len(done)

    def _poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        try:
            records: dict[TopicPartition, list[Any]] = self._consumer.poll(
                timeout_ms=timeout_ms
            )
        except NoOffsetForPartitionError as exc:
            self._start_fresh(exc.args[0] if exc.args else ())
            return {}
        except LOST as exc:
            raise lost(exc) from exc
        except KafkaError as exc:
            raise EventsError(f"polling {self.group_id!r} failed: {exc}") from exc
        for tp, partition_records in records.items():
            self._check.reach(TP(*tp), partition_records[-1].offset + 1)
        self._check.short(self._consumer)
        return records

    def _gather(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Poll on into ``records`` for ``gather_ms`` (or ``gather_records``):
        each partition's records stay in order, after the ones before them. A
        partition revoked meanwhile still has its records handed over, as a
        rebalance during any batch does: consumers are at least once."""
        deadline = time.monotonic() + self._gather_ms / 1000
        count = sum(len(batch) for batch in records.values())
        while count < self._gather_records:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            for tp, more in self._poll(left_ms).items():
                records.setdefault(tp, []).extend(more)
                count += len(more)

    def _start_fresh(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions the group never committed on: from the consumer's own
        record of its position, or by the configured policy."""
        tps = list(partitions)
        forgotten = sorted(
            f"{tp.topic}/{tp.partition} (committed {self._committed[TP(*tp)]})"
            for tp in tps
            if TP(*tp) in self._committed
        )
        if forgotten:
            raise LogLostError(
                f"group {self.group_id!r} no longer has the offsets it committed "
                f"on {', '.join(forgotten)}"
            )
        known = dict(self._start_at(TP(*tp) for tp in tps)) if self._start_at else {}
        rest = []
        for tp in tps:
            offset = known.get(TP(*tp))
            if offset is None:
                rest.append(tp)
            else:
                self._consumer.seek(tp, offset)
                self._check.reach(TP(*tp), offset)
        if not rest:
            return
        log.info(
            "group %r starts %d partition(s) it never committed on at the %s",
            self.group_id,
            len(rest),
            self._settings.consumer.auto_offset_reset,
        )
        if self._settings.consumer.auto_offset_reset == "earliest":
            self._consumer.seek_to_beginning(*rest)
        else:
            self._consumer.seek_to_end(*rest)

    def _delivery(self, record: object) -> Delivery:
        value: bytes = record.value or b""  # type: ignore[attr-defined]
        key: bytes | None = record.key  # type: ignore[attr-defined]
        message: Message | None = None
        error: MessageDecodeError | None = None
        if self._decode:
            try:
                message = self._codec.decode(value)
            except MessageDecodeError as exc:
                error = exc
        return Delivery(
            topic=record.topic,  # type: ignore[attr-defined]
            partition=record.partition,  # type: ignore[attr-defined]
            offset=record.offset,  # type: ignore[attr-defined]
            key=None if key is None else key.decode(errors="replace"),
            value=value,
            message=message,
            error=error,
            timestamp=_timestamp(record),
        )

    def _commit(
        self,
        records: dict[TopicPartition, list[object]],
        done: set[tuple[str, int, int]],
    ) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, partition_records in records.items():
            next_offset = None
            for record in partition_records:
                offset = record.offset  # type: ignore[attr-defined]
                if (tp.topic, tp.partition, offset) not in done:
                    # Redeliver from the first unhandled record on the next poll.
                    self._consumer.seek(tp, offset)
                    break
                next_offset = offset + 1
            if next_offset is not None:
                offsets[tp] = OffsetAndMetadata(next_offset, "", -1)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
            for tp, meta in offsets.items():
                self._committed[TP(*tp)] = meta.offset
        except CommitFailedError as exc:
            # The group rebalanced: the new owner gets these records again.
            # Duplicates are harmless by design; losing them is not.
            log.warning("commit failed after a rebalance, records redelivered: %s", exc)
        except KafkaError as exc:
            # Not committed: the records come again, here or to a new owner.
            raise EventsError(f"committing {self.group_id!r} failed: {exc}") from exc

    def run(self) -> None:
        """Poll, handle and commit until :meth:`stop` is called."""
        while not self._stopping.is_set():
            self.poll_once()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand; thread-safe."""
        self._stopping.set()

    def close(self) -> None:
        # Nothing is auto-committed on close: only what poll_once committed.
        self._consumer.close(autocommit=False)


def _timestamp(record: object) -> int:
    stamp: int | None = record.timestamp  # type: ignore[attr-defined]
    return -1 if stamp is None else stamp
