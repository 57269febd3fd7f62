"""The whole recorded history, read back from the projections for analysis:
every saga's log records, and the replies its host dead-lettered.

What ``saga backtest`` replays (see :mod:`actors.analysis`). One scan of
``saga_events`` and one of ``dead_letters``, so a run of tens of thousands of
sagas reads in seconds, from the writer's file or a reader's connection.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import duckdb

from actors.core import LogRecord
from events.errors import MessageDecodeError
from events.wire.messages import EventMessage, MessageCodec
from projections.archive import places, records_of


class History(NamedTuple):
    #: Each saga's log records, in order.
    logs: dict[str, list[LogRecord]]
    #: The replies dead-lettered for each saga: when, and the reply.
    letters: dict[str, list[tuple[int, EventMessage]]]


def history(db: duckdb.DuckDBPyConnection) -> History:
    """Every saga's log and dead-lettered replies in ``db``'s projections."""
    rows = db.execute(
        f"SELECT saga_id, saga_type, seq, epoch_ms(occurred_at), data, {places(db)} "
        "FROM saga_events ORDER BY saga_id, seq"
    ).fetchall()
    logs: dict[str, list[LogRecord]] = {}
    group: list[tuple[Any, ...]] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            logs[group[0][0]] = records_of(group[0][0], [r[1:] for r in group])
            group = []
        group.append(row)
    if group:
        logs[group[0][0]] = records_of(group[0][0], [r[1:] for r in group])
    return History(logs, _letters(db))


def _letters(
    db: duckdb.DuckDBPyConnection,
) -> dict[str, list[tuple[int, EventMessage]]]:
    """The dead letters that are replies to a saga, by saga, oldest first
    (a letter that is not a reply, or not readable, tells a backtest
    nothing about an answer)."""
    codec = MessageCodec()
    found: dict[str, list[tuple[int, EventMessage]]] = {}
    for saga_id, dead_at, payload in db.execute(
        "SELECT saga_id, epoch_ms(dead_at), payload FROM dead_letters "
        "WHERE saga_id IS NOT NULL ORDER BY dead_at"
    ).fetchall():
        try:
            message = codec.decode(bytes(payload))
        except MessageDecodeError:
            continue
        if isinstance(message, EventMessage) and message.saga_id == saga_id:
            found.setdefault(saga_id, []).append((dead_at, message))
    return found
