"""IdempotencyService on real DuckDB files: one transaction for effect and record."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from actors.participants.idempotency import IdempotencyService, Processed
from projections.errors import StoreLockedError
from projections.store import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def ledger(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS ledger (key VARCHAR, amount INTEGER)")


def test_effect_and_record_commit_together_and_a_duplicate_gets_the_stored_reply(
    tmp_path: Path,
) -> None:
    db = open_store(tmp_path / "svc.duckdb")
    ledger(db)
    service = IdempotencyService(db, cleanup_every_s=None)
    assert service.seen(["k1"]) == {}
    service.commit(
        [Processed("k1", "m1", b'{"ok":true}')],
        lambda c: c.execute("INSERT INTO ledger VALUES ('k1', 5)"),
    )
    # The same key again (a redelivery, or attempt 2 of the same step).
    assert service.seen(["k1", "k2"]) == {"k1": b'{"ok":true}'}
    assert db.execute("SELECT count(*) FROM ledger").fetchone() == (1,)
    with pytest.raises(duckdb.ConstraintException):
        service.commit([Processed("k1", "m1-again", b"x")])
    assert service.seen(["k1"]) == {"k1": b'{"ok":true}'}
    service.close()
    db.close()


def test_a_failing_effect_leaves_neither_effect_nor_record(tmp_path: Path) -> None:
    db = open_store(tmp_path / "svc.duckdb")
    ledger(db)
    service = IdempotencyService(db, cleanup_every_s=None)

    def half_then_fail(c: duckdb.DuckDBPyConnection) -> None:
        c.execute("INSERT INTO ledger VALUES ('k1', 5)")
        raise RuntimeError("injected fault")

    with pytest.raises(RuntimeError, match="injected"):
        service.commit([Processed("k1", "m1", b"r")], half_then_fail)
    assert service.seen(["k1"]) == {}
    assert db.execute("SELECT count(*) FROM ledger").fetchone() == (0,)
    service.close()
    db.close()


def test_a_process_killed_mid_transaction_leaves_neither(tmp_path: Path) -> None:
    path = tmp_path / "svc.duckdb"
    script = textwrap.dedent(
        f"""
        import os, signal
        from actors.participants.idempotency import IdempotencyService, Processed
        from projections.store import open_store
        db = open_store({str(path)!r})
        db.execute("CREATE TABLE ledger (key VARCHAR, amount INTEGER)")
        service = IdempotencyService(db, cleanup_every_s=None)
        service.commit([Processed("k0", "m0", b"r0")],
                       lambda c: c.execute("INSERT INTO ledger VALUES ('k0', 1)"))

        def die(c):
            c.execute("INSERT INTO ledger VALUES ('k1', 5)")
            os.kill(os.getpid(), signal.SIGKILL)

        service.commit([Processed("k1", "m1", b"r1")], die)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()  # it really died
    db = open_store(path)
    service = IdempotencyService(db, cleanup_every_s=None)
    assert service.seen(["k0", "k1"]) == {"k0": b"r0"}
    assert db.execute("SELECT key FROM ledger").fetchall() == [("k0",)]
    service.close()
    db.close()


def test_records_past_retention_are_cleaned_up(tmp_path: Path) -> None:
    clock = Clock()
    db = open_store(tmp_path / "svc.duckdb")
    service = IdempotencyService(db, retention_s=60, cleanup_every_s=None, clock=clock)
    service.commit([Processed("old", "m", b"r")])
    clock.now += 61
    service.commit([Processed("new", "m2", b"r2")])
    assert service.cleanup() == 1
    assert service.seen(["old", "new"]) == {"new": b"r2"}
    service.close()
    db.close()


def test_background_cleanup_runs(tmp_path: Path) -> None:
    clock = Clock()
    db = open_store(tmp_path / "svc.duckdb")
    service = IdempotencyService(db, retention_s=1, cleanup_every_s=0.05, clock=clock)
    service.commit([Processed("old", "m", b"r")])
    clock.now += 2
    stop = time.monotonic() + 5
    while service.count() and time.monotonic() < stop:
        time.sleep(0.05)
    assert service.count() == 0
    service.close()
    db.close()


def test_a_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "svc.duckdb"
    db = open_store(path)
    script = f"from projections.store import open_store; open_store({str(path)!r})"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert StoreLockedError.__name__ in result.stderr
    assert "one writer per file" in result.stderr
    db.close()
