"""The payment service: payments within a limit and a balance, and refunds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import duckdb

from actors.core import COMPENSATE
from actors.participants.base import Outcome, Participant, insert_rows
from events.wire.messages import CommandMessage


class PaymentService(Participant):
    """Payments within a per-payment limit and the wallet's balance; refunds.

    One payment per saga (``pay-<sagaId>``) and one refund per payment, whatever
    the idempotency records still remember. A refund into a wallet that no
    longer exists (its user closed it) is refused, and its next attempt decided
    afresh: once the wallet is reopened, it refunds.
    """

    service = "payment"
    actions = ("process", "refund")
    schema = """
        CREATE TABLE IF NOT EXISTS wallets (
            user_id VARCHAR PRIMARY KEY, balance BIGINT NOT NULL,
            payment_limit BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS payments (
            payment_id VARCHAR, saga_id VARCHAR, user_id VARCHAR, amount BIGINT,
            currency VARCHAR, created_at TIMESTAMPTZ);
        CREATE TABLE IF NOT EXISTS refunds (
            payment_id VARCHAR, saga_id VARCHAR, amount BIGINT, created_at TIMESTAMPTZ);
        CREATE TABLE IF NOT EXISTS closed_wallets (
            user_id VARCHAR PRIMARY KEY, balance BIGINT NOT NULL,
            payment_limit BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS wallet_closings (saga_id VARCHAR PRIMARY KEY);
    """

    def load(self) -> None:
        self.wallets = {
            user: [balance, limit]
            for user, balance, limit in self.db.execute(
                "SELECT user_id, balance, payment_limit FROM wallets"
            ).fetchall()
        }
        self.payments = {
            pid: (user, amount)
            for pid, user, amount in self.db.execute(
                "SELECT payment_id, user_id, amount FROM payments"
            ).fetchall()
        }
        self.refunded = {
            pid
            for (pid,) in self.db.execute("SELECT payment_id FROM refunds").fetchall()
        }
        #: Sagas whose user closes their wallet as the saga's payment commits
        #: (`saga run --chaos`: :meth:`close_wallets_after_paying`).
        self._closing = {
            saga
            for (saga,) in self.db.execute(
                "SELECT saga_id FROM wallet_closings"
            ).fetchall()
        }

    def seed(self, wallets: dict[str, tuple[int, int]]) -> None:
        insert_rows(
            self.db, "wallets", [(u, b, lim) for u, (b, lim) in wallets.items()]
        )
        self.wallets.update({u: [b, lim] for u, (b, lim) in wallets.items()})

    def close_wallets_after_paying(self, saga_ids: Iterable[str]) -> None:
        """Fault injection for `saga run --chaos`: the user of each of these
        sagas closes their wallet in the transaction that commits the saga's
        payment, so a refund the saga needs later finds no wallet, attempt
        after attempt, until :meth:`reopen_wallets`. Kept in the file: a
        restart before the payment must not forget it."""
        ids = sorted(set(saga_ids))

        def write(db: duckdb.DuckDBPyConnection) -> None:
            db.execute("INSERT OR IGNORE INTO wallet_closings SELECT unnest(?)", [ids])

        with self._lock:
            self.idempotency.commit([], write)
            self._closing.update(ids)

    def closed_wallets(self) -> list[str]:
        """The users whose wallets are closed."""
        with self._lock, self.idempotency.lock:  # its cleanup shares the file
            rows = self.db.execute("SELECT user_id FROM closed_wallets").fetchall()
        return sorted(user for (user,) in rows)

    def reopen_wallets(self) -> list[str]:
        """Every closed wallet opens again, with the balance it closed with;
        returns their users."""
        reopened: list[str] = []

        def write(db: duckdb.DuckDBPyConnection) -> None:
            db.execute("INSERT INTO wallets SELECT * FROM closed_wallets")
            rows = db.execute("DELETE FROM closed_wallets RETURNING user_id")
            reopened.extend(user for (user,) in rows.fetchall())

        with self._lock:
            self.idempotency.commit([], write)
            self.load()
        return sorted(reopened)

    def begin(self) -> None:
        self._balances: dict[str, int] = {}
        # The batch's rows by payment_id: each payment and refund at most once.
        self._payments: dict[str, tuple[Any, ...]] = {}
        self._refunds: dict[str, tuple[Any, ...]] = {}

    def _balance(self, user: str) -> int:
        return int(self._balances.get(user, self.wallets[user][0]))

    def decide(self, command: CommandMessage, now: datetime) -> Outcome:
        payload = command.payload
        if command.target_service != self.service:
            return Outcome(
                False, error=f"not a payment command: {command.target_service}"
            )
        if command.step_id.endswith(COMPENSATE):
            return self._refund(command, payload, now)
        payment_id = f"pay-{command.saga_id}"
        earlier = self._payment(payment_id)
        if earlier is not None:
            # A late duplicate whose idempotency record is gone: the saga has
            # its payment; answer as the first time, take nothing more.
            return Outcome(True, {"paymentId": payment_id, "amount": earlier[1]})
        user = str(payload.get("userId", ""))
        amount = payload.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            return Outcome(
                False, error=f"amount must be a positive integer, got {amount!r}"
            )
        if user not in self.wallets:
            return Outcome(False, error=f"no wallet for user {user}")
        if amount > self.wallets[user][1]:
            return Outcome(False, error=f"over the limit of {self.wallets[user][1]}")
        if amount > self._balance(user):
            return Outcome(False, error="insufficient funds")
        if self._refunded(payment_id):
            return Outcome(False, error="the saga was rolled back before this payment")
        self._balances[user] = self._balance(user) - amount
        self._payments[payment_id] = (
            payment_id,
            command.saga_id,
            user,
            amount,
            payload.get("currency"),
            now,
        )
        return Outcome(True, {"paymentId": payment_id, "amount": amount})

    def _refund(
        self, command: CommandMessage, payload: dict[str, Any], now: datetime
    ) -> Outcome:
        payment_id = str(payload.get("paymentId") or f"pay-{command.saga_id}")
        if self._refunded(payment_id):
            return Outcome(True, {"paymentId": payment_id, "alreadyRefunded": True})
        found = self._payment(payment_id)
        if found is None:
            # The payment never happened (its command timed out on the way):
            # nothing to give back, and a late arrival of it must be refused.
            self._refunds[payment_id] = (payment_id, command.saga_id, 0, now)
            return Outcome(True, {"paymentId": payment_id, "refunded": 0})
        user, amount = found
        if user not in self.wallets:
            # Not recorded (a refused compensation): once the wallet is back,
            # the next attempt refunds.
            return Outcome(
                False, error=f"no wallet for user {user} to refund {amount} into"
            )
        self._balances[user] = self._balance(user) + amount
        self._refunds[payment_id] = (payment_id, command.saga_id, amount, now)
        return Outcome(True, {"paymentId": payment_id, "refunded": amount})

    def _payment(self, payment_id: str) -> tuple[str, int] | None:
        """The payment's (user, amount), committed or in this batch."""
        found = self.payments.get(payment_id)
        if found is None and payment_id in self._payments:
            row = self._payments[payment_id]
            found = (row[2], row[3])
        return found

    def _refunded(self, payment_id: str) -> bool:
        return payment_id in self.refunded or payment_id in self._refunds

    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        insert_rows(db, "payments", list(self._payments.values()))
        insert_rows(db, "refunds", list(self._refunds.values()))
        if self._balances:
            db.execute(
                "UPDATE wallets SET balance = v.balance FROM "
                "(SELECT unnest(?) AS user_id, unnest(?) AS balance) v "
                "WHERE wallets.user_id = v.user_id",
                [list(self._balances), list(self._balances.values())],
            )
        if closing := self._closed_now():
            # After the payment's debit above: the wallet closes with it.
            db.execute(
                "INSERT INTO closed_wallets SELECT * FROM wallets "
                "WHERE list_contains(?, user_id)",
                [closing],
            )
            db.execute("DELETE FROM wallets WHERE list_contains(?, user_id)", [closing])
            paid = [row[1] for row in self._payments.values()]
            db.execute(
                "DELETE FROM wallet_closings WHERE list_contains(?, saga_id)", [paid]
            )

    def _closed_now(self) -> list[str]:
        """The users whose wallets close with this batch: those of its payments
        made for sagas in :attr:`_closing`."""
        if not self._closing:
            return []  # every batch outside a chaos run: nothing to look at
        paid = self._payments.values()
        return sorted({row[2] for row in paid if row[1] in self._closing})

    def adopt(self) -> None:
        for user, balance in self._balances.items():
            self.wallets[user][0] = balance
        for user in self._closed_now():
            del self.wallets[user]
        for pid, saga_id, user, amount, _, _ in self._payments.values():
            self.payments[pid] = (user, amount)
            self._closing.discard(saga_id)
        self.refunded.update(self._refunds)
