"""A saga's log and the dead letters, read back from the projections.

What ``saga show`` and ``saga dlq list|show`` read when there is no broker to
ask (a finished ``saga run``, whose embedded broker lived in memory): the
``saga_events`` and ``dead_letters`` tables hold what ``saga.events`` and
``saga.dlq`` held, as the projection read it through the fence.

A log record holds the events of one decision; the table keeps each event with
its decision's time, so :func:`saga_log` gives back one record per decision
time (consecutive events of one time), without the ``cause`` and ``epoch`` the
table does not keep (their defaults, as in logs from before they existed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import msgspec

from actors.core import AnySagaEvent, LogRecord
from events.transport.dlq import Entry, parse_id
from events.wire.dead_letters import DeadLetter
from projections.errors import ProjectionError
from projections.reader import columns_of

#: The events as the table keeps them, each as it was on the log.
_EVENTS = msgspec.json.Decoder(list[AnySagaEvent])


class NoSuchLetterError(ProjectionError):
    """No dead letter with that id in the projections."""


def saga_log(db: duckdb.DuckDBPyConnection, saga_id: str) -> list[LogRecord]:
    """The saga's log records, in order (empty if the projections never saw it)."""
    rows = db.execute(
        "SELECT saga_type, seq, epoch_ms(occurred_at), data FROM saga_events "
        "WHERE saga_id = ? ORDER BY seq",
        [saga_id],
    ).fetchall()
    records: list[LogRecord] = []
    group: list[tuple[Any, ...]] = []
    for row in rows:
        if group and (row[2] != group[-1][2] or row[1] != group[-1][1] + 1):
            records.append(_record(saga_id, group))
            group = []
        group.append(row)
    if group:
        records.append(_record(saga_id, group))
    return records


def _record(saga_id: str, group: list[tuple[Any, ...]]) -> LogRecord:
    saga_type, seq, at, _ = group[0]
    raw = "[" + ",".join(row[3] for row in group) + "]"
    try:
        events = _EVENTS.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProjectionError(
            f"saga {saga_id}'s events from seq {seq} in saga_events are not saga "
            f"events: {exc}"
        ) from exc
    return LogRecord(
        saga_id=saga_id, saga_type=saga_type, seq=seq, at=at, events=events
    )


def dead_letters(
    db: duckdb.DuckDBPyConnection,
    *,
    topic: str | None = None,
    saga_id: str | None = None,
    at: tuple[int, int] | None = None,
) -> list[Entry]:
    """Every dead letter the projection read, oldest first, filtered (``at``:
    the one at that partition and offset of ``saga.dlq``); named by their
    place on ``saga.dlq`` as ``saga dlq`` names them."""
    partition, offset = at if at is not None else (None, None)
    have = columns_of(db, "dead_letters")
    # Columns an older writer did not keep: a letter's defaults.
    key = '"key"' if "key" in have else "NULL"
    size = "payload_size" if "payload_size" in have else "NULL"
    rows = db.execute(
        f"""
        SELECT dlq_partition, dlq_offset, topic, "partition", "offset", error,
               dead_at, source, payload, {key}, message_id, saga_id, attempts,
               {size}
        FROM dead_letters
        WHERE (?::VARCHAR IS NULL OR topic = ?) AND (?::VARCHAR IS NULL OR saga_id = ?)
          AND (?::INTEGER IS NULL OR (dlq_partition = ? AND dlq_offset = ?))
        ORDER BY dead_at, dlq_partition, dlq_offset
        """,
        [topic, topic, saga_id, saga_id, partition, partition, offset],
    ).fetchall()
    return [_entry(row) for row in rows]


def dead_letter(db: duckdb.DuckDBPyConnection, letter_id: str) -> Entry:
    """The letter ``PARTITION:OFFSET``, or :class:`NoSuchLetterError`."""
    found = dead_letters(db, at=parse_id(letter_id))
    if found:
        return found[0]
    (count,) = db.execute("SELECT count(*) FROM dead_letters").fetchone() or (0,)
    raise NoSuchLetterError(
        f"no dead letter {letter_id} in the projections ({count} letter"
        f"{'s' if count != 1 else ''} there; `saga dlq list` names them)"
    )


def _entry(row: tuple[Any, ...]) -> Entry:
    (dlq_partition, dlq_offset, topic, partition, offset, error, dead_at,
     source, payload, key, message_id, saga_id, attempts, size) = row  # fmt: skip
    when: datetime = dead_at
    letter = DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        error=error,
        dead_at=when.astimezone(UTC),
        source=source,
        payload=bytes(payload),
        key=key,
        message_id=message_id,
        saga_id=saga_id,
        attempts=attempts,
        payload_size=0 if size is None else size,
    )
    return Entry(dlq_partition, dlq_offset, letter)
