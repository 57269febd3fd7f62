"""What every participant service shares: a domain handler over its own DuckDB file.

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
original success, and nothing is applied twice. A refusal of a forward command
has no effect row to remember it by, so its idempotency record is kept past the
retention: a deposit refused (the saga then refunded the payment) must not land
when a duplicate comes weeks later to an account opened since, nor a refused
payment be taken from a wallet funded since (the saga was rejected).

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
from actors.participants.idempotency import IdempotencyService, Processed
from events.errors import ServiceUnavailableError
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import command_topic
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
        self._die_after_commit: Callable[[], None] | None = None
        self._die_before_commit: Callable[[], None] | None = None
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
            # A refusal leaves no effect row to act as its natural key, so its
            # record is kept past the retention.
            kept = not outcome.success
            records.append(Processed(key, command.message_id, raw, kept))
        if self._faults and self._random.random() < self._faults:
            raise TransientFault(f"{self.service}: injected transient fault")
        if records and self._die_before_commit is not None:
            # `saga run --chaos`: decided, nothing written, nothing answered.
            self._die_before_commit()
        self.idempotency.commit(records, self.write)
        self.adopt()
        if records and self._die_after_commit is not None:
            # `saga run --chaos`: effects durable, replies never sent.
            self._die_after_commit()
        return replies

    def die_before_next_commit(self, die: Callable[[], None]) -> None:
        """Fault injection for `saga run --chaos`: the next batch with effects
        to commit calls ``die`` (which ends the process) once it is decided,
        before anything of it is written."""
        self._die_before_commit = die

    def die_after_next_commit(self, die: Callable[[], None]) -> None:
        """Fault injection for `saga run --chaos`: the next batch that commits
        an effect calls ``die`` (which ends the process) before its replies go
        out."""
        self._die_after_commit = die

    def close(self) -> None:
        self.idempotency.close()
        self.db.close()


def insert_rows(
    db: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows with one statement: a column per ``unnest``."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    marks = ", ".join("unnest(?)" for _ in columns)
    db.execute(f"INSERT INTO {table} SELECT {marks}", [list(c) for c in columns])
