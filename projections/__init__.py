"""DuckDB: idempotency records, participant state, and (next) the saga projections."""
