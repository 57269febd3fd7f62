"""The platform's participant services: user verification, payment, account.

Each is a :class:`~events.service.CommandService` over its command topics with a
domain handler whose state lives in its own DuckDB file. A batch is decided in
memory (a working copy of the state), then its effects and the idempotency
records of its commands commit in one DuckDB transaction, and only then does
the working copy become the state. A crash before the commit loses nothing
(the commands are redelivered); after it, a redelivery finds the stored reply
and applies nothing twice.

Which replies are recorded: every success, and every refusal of a forward
command (sticky: a refused payment must never be applied by a later duplicate,
or money is taken for a rejected saga). A refused compensation is not recorded:
its next attempt is decided afresh and answered with a reply of its own
(``<messageId>:reply``), so a refund refused for a while heals instead of
repeating one stored refusal that the saga drops as a duplicate. Every reply
names the command it answers (``commandId``); a stored one keeps the commandId
of the attempt that made it.

Effects are append-only rows (payments, refunds, deposits) that name their
saga, so an audit can count them per saga straight from the files. They are
also natural keys that outlive the idempotency records' retention: one payment
(``pay-<sagaId>``), one refund per payment and one deposit per saga. A late
duplicate (a dead letter replayed, a group re-reading from earliest) gets the
original success, and nothing is applied twice.

A database or disk failure (DuckDB's operational errors: I/O, a failed commit,
out of memory) is not the command's fault: the handler raises
:class:`~events.errors.ServiceUnavailableError`, and the command service backs
off and redelivers the batch instead of dead-lettering it.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import msgspec

from actors.core import COMPENSATE
from events.errors import ServiceUnavailableError
from events.messages import CommandMessage, EventMessage, MessageCodec
from events.service import CommandService, RetrySettings
from events.settings import KafkaSettings
from events.topics import command_topic
from projections.idempotency import IdempotencyService, Processed
from projections.store import open_store


class TransientFault(RuntimeError):
    """An injected failure that a retry gets past."""


class Outcome(msgspec.Struct, frozen=True):
    success: bool
    payload: dict[str, Any] = {}
    error: str | None = None


def idempotency_key(command: CommandMessage) -> str:
    """The same for every attempt of a step where the orchestrator says so."""
    return command.metadata.get("idempotencyKey") or command.message_id


class Participant(ABC):
    """A domain handler with its state in one DuckDB file."""

    service: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]
    schema: ClassVar[str]

    def __init__(
        self,
        path: str | Path,
        *,
        faults: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``faults`` is fault injection for `saga run`: the share of batches
        that fail with a :class:`TransientFault` after deciding and before
        committing, as a database or network hiccup would. ``clock`` dates the
        idempotency records (their retention runs on it)."""
        self.path = Path(path)
        self._faults = faults
        self._random = random.Random(seed)
        self.db = open_store(self.path)
        self.db.execute(self.schema)
        self.idempotency = IdempotencyService(self.db, clock=clock)
        self._codec = MessageCodec()
        self._lock = threading.Lock()
        self.load()

    @property
    def topics(self) -> list[str]:
        return [command_topic(self.service, action) for action in self.actions]

    @abstractmethod
    def load(self) -> None:
        """Read the state from the database into memory."""

    @abstractmethod
    def begin(self) -> None:
        """Start a working copy of the state for one batch."""

    @abstractmethod
    def decide(self, command: CommandMessage, now: datetime) -> Outcome:
        """Apply one command to the working copy; record its effect rows (none
        for a refusal: a refused compensation leaves no record to pair them
        with)."""

    @abstractmethod
    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        """Write the working copy's effects (inside the caller's transaction)."""

    @abstractmethod
    def adopt(self) -> None:
        """The batch committed: the working copy becomes the state."""

    def handle(self, commands: Sequence[CommandMessage]) -> list[EventMessage]:
        """The batch handler: one reply per command, effects applied once.

        Raises :class:`ServiceUnavailableError` when the database fails to
        operate; the batch then applied nothing.
        """
        with self._lock:
            try:
                return self._handle(commands)
            except duckdb.OperationalError as exc:
                # I/O, a commit that could not be written, out of memory: the
                # database's fault, not the batch's. Constraint and other
                # errors stay what they are and count against the commands.
                raise ServiceUnavailableError(
                    f"{self.service}: database unavailable: {exc}"
                ) from exc

    def _handle(self, commands: Sequence[CommandMessage]) -> list[EventMessage]:
        now = datetime.now(UTC)
        stored = self.idempotency.seen(idempotency_key(c) for c in commands)
        self.begin()
        replies: list[EventMessage] = []
        records: list[Processed] = []
        for command in commands:
            key = idempotency_key(command)
            if key in stored:
                replies.append(self._codec.decode(stored[key]))  # type: ignore[arg-type]
                continue
            outcome = self.decide(command, now)
            reply = EventMessage(
                # Per attempt: a compensation refused, then decided afresh,
                # answers with a new id the saga does not drop as a duplicate.
                message_id=f"{command.message_id}:reply",
                saga_id=command.saga_id,
                step_id=command.step_id,
                timestamp=now,
                success=outcome.success,
                payload=outcome.payload,
                error=outcome.error,
                command_id=command.message_id,
            )
            replies.append(reply)
            if not outcome.success and command.step_id.endswith(COMPENSATE):
                continue  # not recorded: the next attempt is decided afresh
            raw = self._codec.encode(reply)
            stored[key] = raw
            records.append(Processed(key, command.message_id, raw))
        if self._faults and self._random.random() < self._faults:
            raise TransientFault(f"{self.service}: injected transient fault")
        self.idempotency.commit(records, self.write)
        self.adopt()
        return replies

    def close(self) -> None:
        self.idempotency.close()
        self.db.close()


def _rows(
    db: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows with one statement: a column per ``unnest``."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    marks = ", ".join("unnest(?)" for _ in columns)
    db.execute(f"INSERT INTO {table} SELECT {marks}", [list(c) for c in columns])


class UserService(Participant):
    """Verification: known, verified users pass; unknown or blocked users fail."""

    service = "user"
    actions = ("verify",)
    schema = """
        CREATE TABLE IF NOT EXISTS users (
            user_id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL);
        CREATE TABLE IF NOT EXISTS verifications (
            saga_id VARCHAR, user_id VARCHAR, passed BOOLEAN, created_at TIMESTAMPTZ);
    """

    def load(self) -> None:
        rows = self.db.execute("SELECT user_id, status FROM users").fetchall()
        self.users: dict[str, str] = dict(rows)

    def seed(self, users: dict[str, str]) -> None:
        _rows(self.db, "users", list(users.items()))
        self.users.update(users)

    def begin(self) -> None:
        self._checks: list[tuple[Any, ...]] = []

    def decide(self, command: CommandMessage, now: datetime) -> Outcome:
        user = str(command.payload.get("userId", ""))
        status = self.users.get(user)
        passed = status == "verified"
        self._checks.append((command.saga_id, user, passed, now))
        if passed:
            return Outcome(True, {"userId": user})
        reason = "unknown user" if status is None else f"user is {status}"
        return Outcome(False, error=f"{reason}: {user}")

    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        _rows(db, "verifications", self._checks)

    def adopt(self) -> None:
        self._checks = []


class PaymentService(Participant):
    """Payments within a per-payment limit and the wallet's balance; refunds.

    One payment per saga (``pay-<sagaId>``) and one refund per payment, whatever
    the idempotency records still remember. A refund into a wallet that no
    longer exists is refused, and its next attempt decided afresh.
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

    def seed(self, wallets: dict[str, tuple[int, int]]) -> None:
        _rows(self.db, "wallets", [(u, b, lim) for u, (b, lim) in wallets.items()])
        self.wallets.update({u: [b, lim] for u, (b, lim) in wallets.items()})

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
        _rows(db, "payments", list(self._payments.values()))
        _rows(db, "refunds", list(self._refunds.values()))
        if self._balances:
            db.execute(
                "UPDATE wallets SET balance = v.balance FROM "
                "(SELECT unnest(?) AS user_id, unnest(?) AS balance) v "
                "WHERE wallets.user_id = v.user_id",
                [list(self._balances), list(self._balances.values())],
            )

    def adopt(self) -> None:
        for user, balance in self._balances.items():
            self.wallets[user][0] = balance
        for pid, _, user, amount, _, _ in self._payments.values():
            self.payments[pid] = (user, amount)
        self.refunded.update(self._refunds)


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
        _rows(self.db, "accounts", [(a, s, 0) for a, s in accounts.items()])
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
        _rows(db, "deposits", list(self._deposits.values()))
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


PARTICIPANTS: dict[str, type[Participant]] = {
    cls.service: cls for cls in (UserService, PaymentService, AccountService)
}


def serve(
    kafka: KafkaSettings,
    participant: Participant,
    *,
    retry: RetrySettings | None = None,
) -> CommandService:
    """A command service for ``participant`` in group ``<service>-service``."""
    return CommandService(
        kafka,
        f"{participant.service}-service",
        participant.topics,
        participant.handle,
        group_id=f"{participant.service}-service",
        retry=retry,
    )


def consumer_groups(orchestrator_group: str) -> list[str]:
    """Every consumer group of the platform: the routers', the projection's and
    each participant service's."""
    return [
        orchestrator_group,
        "saga-projection",
        *(f"{name}-service" for name in PARTICIPANTS),
    ]
