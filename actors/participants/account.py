"""The account service: deposits into open accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from actors.participants.base import Outcome, Participant, insert_rows
from events.wire.messages import CommandMessage


class AccountService(Participant):
    """Deposits into open accounts; a closed or unknown account fails.

    One deposit per saga, whatever the idempotency records still remember.
    """

    service = "account"
    actions = ("deposit",)
    schema = """
        CREATE TABLE IF NOT EXISTS accounts (
            account_id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL,
            balance BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS deposits (
            saga_id VARCHAR, account_id VARCHAR, amount BIGINT, payment_id VARCHAR,
            created_at TIMESTAMPTZ);
    """

    def load(self) -> None:
        self.accounts = {
            account: [status, balance]
            for account, status, balance in self.db.execute(
                "SELECT account_id, status, balance FROM accounts"
            ).fetchall()
        }
        #: The account each saga's deposit went into: the natural key.
        self.deposited: dict[str, str] = dict(
            self.db.execute("SELECT saga_id, account_id FROM deposits").fetchall()
        )

    def seed(self, accounts: dict[str, str]) -> None:
        insert_rows(self.db, "accounts", [(a, s, 0) for a, s in accounts.items()])
        self.accounts.update({a: [s, 0] for a, s in accounts.items()})

    def begin(self) -> None:
        self._balances: dict[str, int] = {}
        # The batch's rows by sagaId: each saga's deposit at most once.
        self._deposits: dict[str, tuple[Any, ...]] = {}

    def decide(self, command: CommandMessage, now: datetime) -> Outcome:
        payload = command.payload
        earlier = self.deposited.get(command.saga_id)
        if earlier is None and command.saga_id in self._deposits:
            earlier = self._deposits[command.saga_id][1]
        if earlier is not None:
            # A late duplicate whose idempotency record is gone: the saga's
            # deposit stands; answer success, credit nothing more.
            balance = self._balances.get(earlier, self.accounts[earlier][1])
            return Outcome(
                True,
                {"accountId": earlier, "balance": balance, "alreadyDeposited": True},
            )
        account = str(payload.get("accountId", ""))
        amount = payload.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            return Outcome(
                False, error=f"amount must be a positive integer, got {amount!r}"
            )
        found = self.accounts.get(account)
        if found is None:
            return Outcome(False, error=f"no account {account}")
        if found[0] != "open":
            return Outcome(False, error=f"account {account} is {found[0]}")
        balance = self._balances.get(account, found[1]) + amount
        self._balances[account] = balance
        self._deposits[command.saga_id] = (
            command.saga_id,
            account,
            amount,
            payload.get("paymentId"),
            now,
        )
        return Outcome(True, {"accountId": account, "balance": balance})

    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        insert_rows(db, "deposits", list(self._deposits.values()))
        if self._balances:
            db.execute(
                "UPDATE accounts SET balance = v.balance FROM "
                "(SELECT unnest(?) AS account_id, unnest(?) AS balance) v "
                "WHERE accounts.account_id = v.account_id",
                [list(self._balances), list(self._balances.values())],
            )

    def adopt(self) -> None:
        for account, balance in self._balances.items():
            self.accounts[account][1] = balance
        self.deposited.update((saga, row[1]) for saga, row in self._deposits.items())
