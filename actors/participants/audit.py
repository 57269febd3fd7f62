"""The audit of money, read from the participant services' own DuckDB files.

For a trading platform the invariant is: for every saga, payments minus refunds
equals deposits, under every fault. This counts the ways it can break (and the
effects applied twice), from the effect rows the services wrote, never from
logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb


def audit(
    data_dir: Path,
    outcomes: dict[str, str],
    ids: set[str],
    wallets: Mapping[str, int],
    accounts: Iterable[str],
) -> dict[str, int]:
    """Violations among the sagas ``ids``, counted from the services' files in
    ``data_dir`` and the sagas' ``outcomes`` (sagaId to status, as the log has
    them). ``wallets`` are the opening balances; ``accounts`` open at zero.

    Money is checked per saga (payments minus refunds equals deposits, and no
    saga both deposited and refunded) and per wallet and account (its balance
    is its opening balance plus its rows).
    """

    def per_saga(file: str, table: str) -> dict[str, tuple[int, int]]:
        with duckdb.connect(str(data_dir / file), read_only=True) as db:
            rows = db.execute(
                f"SELECT saga_id, count(*), sum(amount) FROM {table} GROUP BY saga_id"
            ).fetchall()
        return {saga: (n, int(total)) for saga, n, total in rows if saga in ids}

    payments = per_saga("payment.duckdb", "payments")
    refunds = per_saga("payment.duckdb", "refunds")
    deposits = per_saga("account.duckdb", "deposits")
    compensated = {s for s, o in outcomes.items() if o == "compensated"}

    def amount(rows: dict[str, tuple[int, int]], saga: str) -> int:
        return rows.get(saga, (0, 0))[1]

    balances = _balance_mismatches(data_dir, wallets, set(accounts))
    return {
        "double_payments": sum(1 for n, _ in payments.values() if n > 1),
        "double_deposits": sum(1 for n, _ in deposits.values() if n > 1),
        "double_refunds": sum(1 for n, _ in refunds.values() if n > 1),
        "missing_refunds": sum(
            1 for s in compensated if s in payments and s not in refunds
        ),
        # Money taken with neither a deposit nor a refund to show for it.
        "lost_payments": sum(
            1 for s in payments if s not in refunds and outcomes.get(s) != "completed"
        ),
        "deposits_not_completed": sum(
            1 for s in deposits if outcomes.get(s) != "completed"
        ),
        "stuck": len(ids) - len(outcomes),
        # The invariant itself: money neither created nor lost, per saga.
        "unbalanced_sagas": sum(
            1
            for s in ids
            if amount(payments, s) - amount(refunds, s) != amount(deposits, s)
        ),
        "deposited_and_refunded": sum(1 for s in deposits if s in refunds),
        "wallet_mismatches": balances[0],
        "account_mismatches": balances[1],
    }


def _balance_mismatches(
    data_dir: Path, opening: Mapping[str, int], opened: set[str]
) -> tuple[int, int]:
    """Wallets (open or closed) and accounts whose balance is not their
    opening balance plus their own rows: an effect applied without its row,
    or the other way."""
    with duckdb.connect(str(data_dir / "payment.duckdb"), read_only=True) as db:
        wallets = db.execute(
            """
            SELECT w.user_id, w.balance,
                   coalesce(p.paid, 0), coalesce(r.refunded, 0)
            FROM (SELECT user_id, balance FROM wallets
                  UNION ALL SELECT user_id, balance FROM closed_wallets) w
            LEFT JOIN (SELECT user_id, sum(amount) AS paid FROM payments
                       GROUP BY user_id) p USING (user_id)
            LEFT JOIN (SELECT p.user_id, sum(r.amount) AS refunded
                       FROM refunds r JOIN payments p USING (payment_id)
                       GROUP BY p.user_id) r USING (user_id)
            """
        ).fetchall()
    with duckdb.connect(str(data_dir / "account.duckdb"), read_only=True) as db:
        accounts = db.execute(
            """
            SELECT a.account_id, a.balance, coalesce(d.total, 0)
            FROM accounts a
            LEFT JOIN (SELECT account_id, sum(amount) AS total FROM deposits
                       GROUP BY account_id) d USING (account_id)
            """
        ).fetchall()
    wallet_bad = sum(
        1
        for user, balance, paid, refunded in wallets
        if user in opening and balance != opening[user] - paid + refunded
    )
    # Accounts open at zero.
    account_bad = sum(
        1
        for account, balance, total in accounts
        if account in opened and balance != total
    )
    return wallet_bad, account_bad
