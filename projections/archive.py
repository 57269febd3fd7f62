"""A saga's log and the dead letters, read back from the projections.

What ``saga show`` and ``saga dlq list|show`` read when there is no broker to
ask (a finished ``saga run``, whose embedded broker lived in memory): the
``saga_events`` and ``dead_letters`` tables hold what ``saga.events`` and
``saga.dlq`` held, as the projection read it through the fence.

A log record holds the events of one decision; the table keeps each event with
its record's place on the log, so :func:`saga_log` gives back one record per
place (in a file from before the table kept it, one per decision time:
consecutive events of one time), without the ``cause`` and ``epoch`` the table
does not keep (their defaults, as in logs from before they existed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import msgspec

from actors.core import AnySagaEvent, LogRecord
from events.transport.dlq import Entry, linked, parse_id
from events.wire.dead_letters import DeadLetter, LetterAction, LetterState
from projections.errors import ProjectionError
from projections.reader import columns_of
from projections.rows import ENDED

#: The events as the table keeps them, each as it was on the log.
_EVENTS = msgspec.json.Decoder(list[AnySagaEvent])


class NoSuchLetterError(ProjectionError):
    """No dead letter with that id in the projections."""


def saga_log(db: duckdb.DuckDBPyConnection, saga_id: str) -> list[LogRecord]:
    """The saga's log records, in order (empty if the projections never saw it)."""
    rows = db.execute(
        f"SELECT saga_type, seq, epoch_ms(occurred_at), data, {places(db)} "
        "FROM saga_events WHERE saga_id = ? ORDER BY seq",
        [saga_id],
    ).fetchall()
    return records_of(saga_id, rows)


def places(db: duckdb.DuckDBPyConnection) -> str:
    """The ``saga_events`` columns that place a record on the log, to select
    (NULLs from a file whose writer did not keep them)."""
    if "offset" in columns_of(db, "saga_events"):
        return '"partition", "offset"'
    return "NULL, NULL"


def records_of(saga_id: str, rows: list[tuple[Any, ...]]) -> list[LogRecord]:
    """One saga's log records from its ``saga_events`` rows in seq order, each
    ``(saga_type, seq, epoch ms, data, partition, offset)``."""
    records: list[LogRecord] = []
    group: list[tuple[Any, ...]] = []
    for row in rows:
        if group and not _same_record(group[-1], row):
            records.append(_record(saga_id, group))
            group = []
        group.append(row)
    if group:
        records.append(_record(saga_id, group))
    return records


def _same_record(before: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    if row[1] != before[1] + 1:
        return False
    if row[5] is not None and before[5] is not None:
        return bool(row[4] == before[4] and row[5] == before[5])
    return bool(row[2] == before[2])


def in_flight_logs(db: duckdb.DuckDBPyConnection) -> dict[str, list[LogRecord]]:
    """The log records of every saga the projections hold as not ended."""
    rows = db.execute(
        "SELECT saga_id FROM sagas WHERE status NOT IN (SELECT unnest(?)) "
        "ORDER BY saga_id",
        [list(ENDED)],
    ).fetchall()
    return {saga_id: saga_log(db, saga_id) for (saga_id,) in rows}


def _record(saga_id: str, group: list[tuple[Any, ...]]) -> LogRecord:
    saga_type, seq, at = group[0][:3]
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
    db: duckdb.DuckDBPyConnection, *, at: tuple[int, int] | None = None
) -> list[Entry]:
    """Every dead letter the projection read (``at``: the one at that partition
    and offset of ``saga.dlq``), oldest first, each with the newest action on
    it and linked to the letter before it for the same message; named by their
    place on ``saga.dlq`` as ``saga dlq`` names them."""
    partition, offset = at if at is not None else (None, None)
    have = columns_of(db, "dead_letters")
    # Columns an older writer did not keep: a letter's defaults.
    added = ", ".join(
        f'"{name}"' if name in have else f"{default} AS {name}"
        for name, default in _ADDED_LETTER_COLUMNS
    )
    rows = db.execute(
        f"""
        SELECT dlq_partition, dlq_offset, topic, "partition", "offset", error,
               dead_at, source, payload, message_id, saga_id, attempts, {added}
        FROM dead_letters
        WHERE (?::INTEGER IS NULL OR (dlq_partition = ? AND dlq_offset = ?))
        ORDER BY dead_at, dlq_partition, dlq_offset
        """,
        [partition, partition, offset],
    ).fetchall()
    actions = _actions(db)
    return linked(_entry(row, actions) for row in rows)


#: The letter columns added since the first release, with their defaults.
_ADDED_LETTER_COLUMNS = (
    ("key", "NULL"),
    ("payload_size", "0"),
    ("saga_type", "''"),
    ("step", "''"),
    ("saga_status", "''"),
)


def _actions(db: duckdb.DuckDBPyConnection) -> dict[str, LetterAction]:
    """The newest action on each letter (none in files from before actions)."""
    if not columns_of(db, "dead_letter_actions"):
        return {}
    rows = db.execute(
        """
        SELECT dlq_partition, dlq_offset,
               arg_max((state, "at", operator, reason, sent), "at")
        FROM dead_letter_actions GROUP BY dlq_partition, dlq_offset
        """
    ).fetchall()
    found = {}
    for partition, offset, newest in rows:
        state, when, operator, reason, sent = newest
        found[f"{partition}:{offset}"] = LetterAction(
            letter=f"{partition}:{offset}",
            state=LetterState(state),
            at=when.astimezone(UTC),
            operator=operator,
            reason=reason,
            sent=sent,
        )
    return found


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


def _entry(row: tuple[Any, ...], actions: dict[str, LetterAction]) -> Entry:
    (dlq_partition, dlq_offset, topic, partition, offset, error, dead_at,
     source, payload, message_id, saga_id, attempts, key, size, saga_type, step,
     saga_status) = row  # fmt: skip
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
        payload_size=size or 0,
        saga_type=saga_type or "",
        step=step or "",
        saga_status=saga_status or "",
    )
    return Entry(
        dlq_partition, dlq_offset, letter, actions.get(f"{dlq_partition}:{dlq_offset}")
    )
