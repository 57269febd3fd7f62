"""Opening DuckDB files: one writing process per file, and a clear error if not."""

from __future__ import annotations

from pathlib import Path

import duckdb

from projections.errors import ProjectionError, StoreLockedError


def open_store(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file for writing, or say clearly who has it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLockedError(
                f"{path} is open for writing in another process (DuckDB allows one "
                f"writer per file): {exc}"
            ) from exc
        raise ProjectionError(f"cannot open {path}: {exc}") from exc
