"""Rebuilding a host's books from the newest snapshot and the log tail after it.

The log is the truth: a snapshot only saves reading all of it. After the
books are back, deadlines are re-armed and the commands the log tail issued
are queued to be sent again (the crash may have come before they went out).
The log is read through the ownership fence (:class:`~actors.core.Fence`),
starting at each snapshot's epoch: a replaced owner's records are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from actors.core import Fence, LogRecord, replay
from actors.engine.books import PartitionBooks
from actors.engine.snapshots import SnapshotStore
from actors.engine.timers import ResendQueue, Timers
from actors.engine.workers import connect_patiently
from actors.errors import RestoreError
from events.errors import (
    EventsError,
    MessageDecodeError,
    MissingTopicError,
    TopicConfigError,
    TopicPartitionMismatchError,
)
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Record
from events.wire.topics import SAGA_EVENTS

log = logging.getLogger(__name__)


class Restored(NamedTuple):
    sagas: int  # from snapshots
    records: int  # log records replayed after them
    seconds: float


def restore(
    kafka: KafkaSettings,
    snapshots: SnapshotStore,
    books: Mapping[int, PartitionBooks],
    timers: Timers,
    resend: ResendQueue,
    not_before: int,
) -> tuple[Restored, Fence]:
    """Fresh ``books`` loaded (:func:`load`) and re-armed (:func:`rearm`);
    returns the counts and the fence as it stands at the log's end."""
    started = time.perf_counter()
    with PartitionReader(kafka) as reader:
        touched, counts, fence = load(reader, snapshots, books)
    rearm(books, timers, resend, touched, not_before)
    report(books, counts._replace(seconds=time.perf_counter() - started), resend)
    return counts, fence


def report(
    books: Mapping[int, PartitionBooks], counts: Restored, resend: ResendQueue
) -> Restored:
    """Log what a restore did; returns ``counts``."""
    log.info(
        "restored partitions %s: %d sagas from snapshots, %d log records, "
        "%d commands to re-send, in %.2f s",
        sorted(books),
        counts.sagas,
        counts.records,
        len(resend),
        counts.seconds,
    )
    return counts


def load(
    reader: PartitionReader,
    snapshots: SnapshotStore,
    books: Mapping[int, PartitionBooks],
) -> tuple[set[str], Restored, Fence]:
    """Newest snapshot + log tail into ``books`` (fresh ones); returns the
    sagaIds the tail moved (their latest commands may not have gone out before
    the crash), the counts (seconds left at 0 for the caller to time) and the
    fence at the end of what was read."""
    found = snapshots.latest(reader, books)
    sagas = 0
    for number, snapshot in found.items():
        part = books[number]
        for state in snapshot.sagas:
            part.keep(state)
        for saga_id in snapshot.finished:
            part.finish(saga_id, snapshot.doubtful.get(saga_id, ""))
        part.end = snapshot.log_offset
        part.manifest = snapshot.manifest_offset
        sagas += len(snapshot.sagas)
    fence = Fence({number: snapshot.epoch for number, snapshot in found.items()})
    touched: set[str] = set()
    records = read_on(reader, books, fence, touched)
    return touched, Restored(sagas, records, 0.0), fence


def read_on(
    reader: PartitionReader,
    books: Mapping[int, PartitionBooks],
    fence: Fence,
    touched: set[str],
) -> int:
    """Read each partition of ``books`` on from its ``end`` to the log's end,
    through ``fence``; adds the sagaIds moved to ``touched``, returns how many
    saga records were applied."""
    starts = {TP(SAGA_EVENTS, number): part.end for number, part in books.items()}
    records = 0
    for raw in reader.read(starts):
        part = books[raw.partition]
        record = _admitted(fence, raw)
        if record is not None:
            touched.add(_replay(part, record, raw))
            part.since += 1
            records += 1
        part.end = raw.offset + 1
    return records


def _admitted(fence: Fence, raw: Record) -> LogRecord | None:
    where = f"{SAGA_EVENTS} partition {raw.partition} offset {raw.offset}"
    try:
        return fence.read(raw.partition, raw.value, where)
    except MessageDecodeError as exc:
        raise RestoreError(f"{where} is not a saga log record: {exc}") from exc


def _replay(part: PartitionBooks, record: LogRecord, raw: Record) -> str:
    where = f"{SAGA_EVENTS} partition {raw.partition} offset {raw.offset}"
    if record.saga_id in part.finished:
        return record.saga_id
    try:
        state = replay(part.sagas.get(record.saga_id), record)
    except RestoreError as exc:
        raise RestoreError(f"{where}: {exc}") from None
    assert state is not None
    part.keep(state)
    return record.saga_id


def rearm(
    books: Mapping[int, PartitionBooks],
    timers: Timers,
    resend: ResendQueue,
    touched: set[str],
    not_before: int,
) -> None:
    """Deadlines back on the timers; the commands the log tail issued queued
    to be sent again.

    A saga whose state came from the snapshot alone had its commands
    acknowledged before the snapshot was written (the host sends what it
    queued before it writes one), so only the tail's sagas are re-sent: after
    a crash, not every in-flight saga's participant gets a duplicate.
    Replies that came while the host was down are still in Kafka: a deadline
    that passed meanwhile waits until ``not_before`` for them, rather than
    spend an attempt on a reply that is already there.
    """
    for number, part in books.items():
        for saga_id, state in part.sagas.items():
            timers.arm(number, state, not_before)
            if saga_id in touched:
                resend.add(number, state)


#: What waiting cannot fix: a missing topic, a wrong partition count, a topic
#: that would lose records (an unreadable log raises RestoreError, no broker
#: error, so it is never retried either).
_FATAL = (MissingTopicError, TopicPartitionMismatchError, TopicConfigError)


def patiently(*steps: Callable[[], None], again: Callable[[], None]) -> None:
    """Run ``steps`` in order until all succeed, waiting out a broker that is
    down (``again`` resets what a failed attempt left); what waiting cannot fix
    raises."""

    def attempt() -> None:
        try:
            for step in steps:
                step()
        except EventsError:
            again()
            raise

    connect_patiently(threading.Event(), attempt, "host restore", fatal=_FATAL)
