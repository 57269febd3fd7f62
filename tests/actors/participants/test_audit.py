"""The money audit catches what it counts: effects written by the real
services into their DuckDB files, then the ways money goes wrong, each
planted on purpose, each counted."""

from __future__ import annotations

from pathlib import Path

import duckdb

from actors.participants import AccountService, PaymentService
from actors.participants.audit import audit
from events.wire.messages import CommandMessage
from tests.actors.participants.messages import command, pay, refund

WALLETS = {"u-1": 1_000}
ACCOUNTS = ["a-1"]


def deposit(saga_id: str) -> CommandMessage:
    return command(saga_id, "deposit", "account", accountId="a-1", amount=100)


def effects(data: Path) -> None:
    """s-ok completed; s-created both deposited and refunded; s-lost paid and
    neither deposited nor refunded: each as the services would write it."""
    payments = PaymentService(data / "payment.duckdb")
    payments.seed({"u-1": (WALLETS["u-1"], 500)})
    accounts = AccountService(data / "account.duckdb")
    accounts.seed(dict.fromkeys(ACCOUNTS, "open"))
    assert all(
        r.success
        for r in payments.handle([pay(s) for s in ("s-ok", "s-created", "s-lost")])
    )
    assert all(
        r.success for r in accounts.handle([deposit("s-ok"), deposit("s-created")])
    )
    assert payments.handle([refund("s-created", 1)])[0].success
    payments.close()
    accounts.close()


def test_a_clean_saga_audits_clean_and_each_violation_is_counted(
    tmp_path: Path,
) -> None:
    effects(tmp_path)
    clean = audit(tmp_path, {"s-ok": "completed"}, {"s-ok"}, WALLETS, ACCOUNTS)
    assert clean == dict.fromkeys(clean, 0)

    outcomes = {
        "s-ok": "completed",
        "s-created": "compensated",
        "s-lost": "compensated",
    }
    ids = {*outcomes, "s-stuck"}
    found = audit(tmp_path, outcomes, ids, WALLETS, ACCOUNTS)
    assert found == {
        "double_payments": 0,
        "double_deposits": 0,
        "double_refunds": 0,
        "missing_refunds": 1,  # s-lost
        "lost_payments": 1,  # s-lost
        "deposits_not_completed": 1,  # s-created
        "stuck": 1,  # s-stuck never ended
        "unbalanced_sagas": 2,  # s-created made 100, s-lost took 100
        "deposited_and_refunded": 1,  # s-created
        "wallet_mismatches": 0,
        "account_mismatches": 0,
    }

    # A balance moved without its row, in each service's file.
    with duckdb.connect(str(tmp_path / "payment.duckdb")) as db:
        db.execute("UPDATE wallets SET balance = balance + 5")
    with duckdb.connect(str(tmp_path / "account.duckdb")) as db:
        db.execute("UPDATE accounts SET balance = balance - 1")
    moved = audit(tmp_path, {"s-ok": "completed"}, {"s-ok"}, WALLETS, ACCOUNTS)
    assert (moved["wallet_mismatches"], moved["account_mismatches"]) == (1, 1)
    # A closed wallet is audited too.
    with duckdb.connect(str(tmp_path / "payment.duckdb")) as db:
        db.execute("INSERT INTO closed_wallets SELECT * FROM wallets")
        db.execute("DELETE FROM wallets")
    closed = audit(tmp_path, {"s-ok": "completed"}, {"s-ok"}, WALLETS, ACCOUNTS)
    assert closed["wallet_mismatches"] == 1

    # Each effect written twice.
    with duckdb.connect(str(tmp_path / "payment.duckdb")) as db:
        db.execute("INSERT INTO payments SELECT * FROM payments WHERE saga_id = 's-ok'")
        db.execute("INSERT INTO refunds SELECT * FROM refunds")
    with duckdb.connect(str(tmp_path / "account.duckdb")) as db:
        db.execute("INSERT INTO deposits SELECT * FROM deposits WHERE saga_id = 's-ok'")
    doubled = audit(tmp_path, outcomes, ids, WALLETS, ACCOUNTS)
    assert (
        doubled["double_payments"],
        doubled["double_deposits"],
        doubled["double_refunds"],
    ) == (1, 1, 1)
