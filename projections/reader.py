"""Reading the projections while the platform writes them.

DuckDB lets one process open a database file for writing, and while it does, no
other process can open that file at all. So readers never open the writer's
file: the projection writer publishes each public table as a Parquet file
(replaced atomically, every ``publish_every_s``), and :func:`open_projections`
gives any process (a notebook, `saga status`, `saga history`) an in-memory
DuckDB whose views read the newest published files::

    from projections.reader import open_projections
    db = open_projections("saga-data/projections")
    db.sql("SELECT status, count(*) FROM sagas GROUP BY status").show()

A connection reads the files as they were published when it was opened (at
most a publish interval behind the writer): open another for newer ones. It
reads hard links to them, made when it opened, not the published paths: the
writer replaces a file while a reader may be scanning it, and a scan that
opens a path again midway (DuckDB's threads each open the file) would meet the
new file with the old one's layout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Final

import duckdb

from projections.errors import ProjectionError
from projections.point_in_time import install
from projections.writer import PUBLISHED

#: Tables published since the first release: a directory an older writer
#: published lacks them (as does one a newer writer is publishing for the
#: first time, its files renamed into place one by one). It still opens,
#: without their views (:func:`columns_of` finds none).
ADDED_LATER: Final = frozenset({"partition_owners", "dead_letter_actions"})


def open_projections(directory: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per published table and the
    point-in-time macros (:mod:`projections.point_in_time`)."""
    directory = Path(directory)
    present = [t for t in PUBLISHED if (directory / f"{t}.parquet").exists()]
    missing = [t for t in PUBLISHED if t not in present and t not in ADDED_LATER]
    if missing:
        raise ProjectionError(
            f"{directory} holds no published projections ({', '.join(missing)} "
            "missing): is the projection writer running with this data dir "
            "(`saga serve` or `saga run --data-dir`)?"
        )
    snapshot = Path(tempfile.mkdtemp(prefix="saga-projections-"))
    db = duckdb.connect(":memory:")
    weakref.finalize(db, shutil.rmtree, snapshot, True)
    for table in present:
        held = snapshot / f"{table}.parquet"
        try:
            os.link(directory / f"{table}.parquet", held)
        except OSError:
            # Another filesystem (or one without hard links): a copy holds it.
            shutil.copyfile(directory / f"{table}.parquet", held)
        path = str(held).replace("'", "''")
        db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    install(db)
    return db


def columns_of(db: duckdb.DuckDBPyConnection, table: str) -> frozenset[str]:
    """The columns ``table`` has in ``db``; none when it has no such table (one
    of :data:`ADDED_LATER` an older writer did not publish)."""
    rows = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
        [table],
    ).fetchall()
    return frozenset(name for (name,) in rows)


def published_age_s(directory: str | Path) -> float:
    """Seconds since the writer last published (the readers' staleness)."""
    stamp = Path(directory) / "published_at"
    try:
        return max(0.0, time.time() - float(stamp.read_text()))
    except (OSError, ValueError) as exc:
        raise ProjectionError(f"no publication stamp in {directory}: {exc}") from exc
