"""Finding sagas in the published projections: ``saga list``.

Filters narrow the ``sagas`` view (status, type, current step, when it
started, the text of its reason or last error, and any SQL condition over its
columns); the matching sagas come newest first, a page at a time, with their
counts by status and by current step over every match, not the page alone.

A page ends with a cursor (:attr:`Listing.next_after`): the next page is the
sagas strictly older than the last one shown, so sagas that start meanwhile
neither repeat a row nor shift one off the page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import duckdb

from actors.core import Status
from projections.errors import ProjectionError
from projections.reader import columns_of
from projections.schema import ADDED


class FilterError(ProjectionError):
    """A filter that cannot be applied: a bad status, time, cursor or SQL."""


#: The statuses a saga can have, for ``--status``.
STATUSES: Final = tuple(s.value for s in Status)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: The row of each saga listed, in order.
_ROW: Final = (
    "saga_id, saga_type, status, current_step, started_at, updated_at, "
    "ended_at, duration_ms, retries, compensations, reason, last_error"
)


class Filters(NamedTuple):
    """What to list; every part narrows (``None`` or empty: no narrowing)."""

    statuses: tuple[str, ...] = ()
    saga_type: str | None = None
    #: The saga's current step (the step it runs, undoes, or ended on).
    step: str | None = None
    #: Started at or after / before.
    since: datetime | None = None
    until: datetime | None = None
    #: A substring (case-insensitive) of its outcome's reason or last error.
    error: str | None = None
    #: A boolean SQL expression over the ``sagas`` columns.
    where: str | None = None


class Listing(NamedTuple):
    total: int
    by_status: dict[str, int]
    #: By current step ("-" for sagas that never commanded one).
    by_step: dict[str, int]
    #: The page, newest first: one dict per saga (times as ISO text).
    sagas: list[dict[str, Any]]
    #: The cursor of the next page (``None``: this is the last).
    next_after: str | None


def parse_moment(text: str, now: datetime) -> datetime:
    """``10m``, ``2h``, ``1.5d``, ``1w`` before ``now``, or an ISO 8601 time
    (without a zone: the local one)."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now - timedelta(seconds=amount * _UNITS[unit])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(
            f"{text!r} is not a time: give an ISO time (2026-11-26T14:30, "
            "2026-11-26 14:30:00+00:00) or an age (30s, 10m, 2h, 1d, 1w)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def list_sagas(
    db: duckdb.DuckDBPyConnection,
    filters: Filters,
    *,
    limit: int = 50,
    after: str | None = None,
    offset: int = 0,
) -> Listing:
    """The sagas matching ``filters`` in ``db`` (an :func:`open_projections`
    connection), ``limit`` of them after the cursor ``after`` (or skipping
    ``offset``), newest first."""
    if limit < 1:
        raise FilterError(f"the page size must be at least 1, not {limit}")
    source = _sagas_view(db)
    conditions, params = _conditions(filters)
    where = " AND ".join(conditions) or "TRUE"
    matching = f"SELECT * FROM {source} WHERE {where}"
    try:
        counts = db.execute(
            f"SELECT status, coalesce(current_step, '-'), count(*) "
            f"FROM ({matching}) GROUP BY ALL",
            params,
        ).fetchall()
    except duckdb.Error as exc:
        raise _sql_error(db, source, filters, exc) from None
    by_status: dict[str, int] = {}
    by_step: dict[str, int] = {}
    for status, step, count in counts:
        by_status[status] = by_status.get(status, 0) + count
        by_step[step] = by_step.get(step, 0) + count
    page_where, page_params = "TRUE", []
    if after is not None:
        started, saga_id = _cursor(after)
        page_where = "(epoch_us(started_at), saga_id) < (?, ?)"
        page_params = [started, saga_id]
    rows = db.execute(
        f"SELECT {_ROW}, epoch_us(started_at) FROM ({matching}) "
        f"WHERE {page_where} ORDER BY started_at DESC, saga_id DESC "
        f"LIMIT {limit + 1} OFFSET {max(0, offset)}",
        [*params, *page_params],
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    names = [c.strip() for c in _ROW.split(",")]
    sagas = [
        {name: _plain(value) for name, value in zip(names, row, strict=False)}
        for row in rows
    ]
    next_after = f"{rows[-1][-1]}/{rows[-1][0]}" if more and rows else None
    return Listing(
        total=sum(by_status.values()),
        by_status=_most_first(by_status),
        by_step=_most_first(by_step),
        sagas=sagas,
        next_after=next_after,
    )


def _most_first(counts: dict[str, int]) -> dict[str, int]:
    # Ties go by name: GROUP BY returns groups in no set order, and a listing
    # that reorders its header between two runs reads as a change.
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _sagas_view(db: duckdb.DuckDBPyConnection) -> str:
    """The ``sagas`` view, with the columns an older writer did not publish
    as NULLs (its sagas are found by the others)."""
    have = columns_of(db, "sagas")
    missing = [(n, kind) for n, kind in ADDED["sagas"] if n not in have]
    if not missing:
        return "sagas"
    nulls = ", ".join(f"NULL::{kind} AS {name}" for name, kind in missing)
    return f"(SELECT *, {nulls} FROM sagas) AS sagas"


def _conditions(filters: Filters) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if filters.statuses:
        unknown = sorted(set(filters.statuses) - set(STATUSES))
        if unknown:
            raise FilterError(
                f"unknown status {', '.join(unknown)}; a saga is one of: "
                f"{', '.join(STATUSES)}"
            )
        conditions.append("status IN (SELECT unnest(?))")
        params.append(list(filters.statuses))
    for column, value in (
        ("saga_type", filters.saga_type),
        ("current_step", filters.step),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if filters.since is not None:
        conditions.append("started_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        conditions.append("started_at < ?")
        params.append(filters.until)
    if filters.error is not None:
        conditions.append(
            "(contains(lower(coalesce(reason, '')), lower(?)) "
            "OR contains(lower(coalesce(last_error, '')), lower(?)))"
        )
        params.extend([filters.error, filters.error])
    if filters.where is not None:
        if not filters.where.strip():
            raise FilterError("--where is empty: give a SQL condition")
        # Parenthesised: the user's OR stays inside its own condition.
        conditions.append(f"({filters.where})")
    return conditions, params


def _sql_error(
    db: duckdb.DuckDBPyConnection,
    source: str,
    filters: Filters,
    exc: duckdb.Error,
) -> FilterError:
    """The failure of a query the filters built: the ``--where`` condition
    named with the columns it may use, when it is there."""
    if filters.where is None:
        return FilterError(f"cannot list sagas: {exc}")
    columns = db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    available = ", ".join(f"{name} ({kind})" for name, kind, *_ in columns)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FilterError(
        f"--where {filters.where!r} is not a condition over the sagas: {message}. "
        f"Its columns: {available}. Statuses: {', '.join(STATUSES)}. "
        'Example: --where "retries > 0 AND duration_ms > 5000"'
    )


def _cursor(text: str) -> tuple[int, str]:
    started, sep, saga_id = text.partition("/")
    if not sep or not started.lstrip("-").isdigit() or not saga_id:
        raise FilterError(
            f"--after {text!r} is not a cursor: use the one the previous page "
            "printed (STARTED_US/SAGA_ID)"
        )
    return int(started), saga_id


def _plain(value: Any) -> Any:
    """A row's value for JSON: times as ISO text in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value
