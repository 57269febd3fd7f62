"""The write-ahead batch: decisions staged until their saga events are durable.

A host runs a batch of inputs through the core one at a time, staging each
applied decision here (its log record, encoded and checked once; the new state;
the commands to send after) and each refused record as a dead letter. Then
:meth:`WriteAhead.append` appends every letter, then every record, and waits
until the broker acknowledged all of them, or raises. Only then does the host
make the staged states current and send the commands.

Letters go first, acknowledged before any record is sent: a record that
landed without its letter would lose the letter for good (the saga's log has
moved on, and a letter about a saga, such as its failure, is staged only when
the saga gets there). The other way round, the batch is decided again and the
letter sent twice: a duplicate a person can see, never a loss.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from actors.core import (
    Decision,
    HistoryCodec,
    LogRecord,
    SagaState,
    Send,
    Status,
    Verdict,
)
from actors.engine.books import PartitionBooks
from actors.engine.inbound import Inbound
from actors.topology import SAGA_HOST
from events.transport.publisher import KafkaMessagePublisher
from events.transport.types import Ack, Outgoing
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.messages import Message
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS

_STATE_ENCODER = msgspec.json.Encoder()


class Batch:
    """What one batch of inputs decided, not yet durable."""

    __slots__ = (
        "late",
        "letters",
        "not_owned",
        "records",
        "report",
        "sends",
        "staged",
    )

    def __init__(self) -> None:
        #: sagaId -> (partition, its newest state in this batch)
        self.staged: dict[str, tuple[int, SagaState]] = {}
        #: (partition, record, its encoding: checked once, sent as is)
        self.records: list[tuple[int, LogRecord, bytes]] = []
        self.letters: list[DeadLetter] = []
        self.sends: list[tuple[int, Send]] = []
        #: (partition, sagaId) whose late success this batch reports.
        self.late: set[tuple[int, str]] = set()
        #: Partitions the inputs were for that the host does not own.
        self.not_owned: set[int] = set()
        self.report = dict.fromkeys(
            ("applied", "duplicates", "dead_letters", "late_replies"), 0
        )

    def state_of(self, saga_id: str, books: PartitionBooks) -> SagaState | None:
        """The saga's newest state: staged in this batch, or live in the books."""
        staged = self.staged.get(saga_id)
        return staged[1] if staged else books.sagas.get(saga_id)

    @property
    def empty(self) -> bool:
        return not (self.records or self.letters)


class WriteAhead:
    """Stages decisions and dead letters into a :class:`Batch`, and appends it."""

    def __init__(self, publisher: KafkaMessagePublisher, max_message_bytes: int):
        self._publisher = publisher
        self._max_message_bytes = max_message_bytes
        # Well under the broker's record limit, so an append cannot fail for good.
        self._record_cap = max_message_bytes // 2
        self._history = HistoryCodec()
        self._letters = DeadLetterCodec()

    def stage(
        self,
        batch: Batch,
        log_end: tuple[int, int],
        before: SagaState | None,
        decision: Decision,
        now: int,
        cause: str,
        epoch: int = 0,
    ) -> str:
        """Stage an applied decision on the partition of ``log_end`` (the
        partition and its log's end), owned at ``epoch``; returns why it
        cannot be logged ("" if it can), in which case nothing of it is staged.

        A saga that ends ``failed`` has a dead letter staged with it: its
        compensation could not be done, and a person must settle the money."""
        partition = log_end[0]
        if decision.verdict is Verdict.DUPLICATE:
            batch.report["duplicates"] += 1
            return ""
        if decision.verdict is not Verdict.APPLIED or not decision.events:
            return ""
        state = decision.state
        assert state is not None
        record = LogRecord(
            saga_id=state.saga_id,
            saga_type=state.saga_type,
            seq=1 if before is None else before.seq + 1,
            at=now,
            events=decision.events,
            cause=cause,
            epoch=epoch,
        )
        raw, refused = self._encoded(record)
        if refused:
            return refused
        batch.report["applied"] += 1
        batch.staged[state.saga_id] = (partition, state)
        batch.records.append((partition, record, raw))
        batch.sends.extend((partition, send) for send in decision.commands)
        if state.status is Status.FAILED:
            self.dead_state(
                batch,
                log_end,
                state,
                now,
                f"saga {state.saga_id} failed: {state.reason}; the compensation of "
                f"step {state.step!r} was refused to its last attempt, so what the "
                "saga did is not undone: settle it by hand (saga show "
                f"{state.saga_id})",
            )
        return ""

    def _encoded(self, record: LogRecord) -> tuple[bytes, str]:
        """The record's bytes, or why it cannot be logged. Each is read back
        through the log codec before it is accepted, so the log never holds a
        record that a restore or a reader could not decode."""
        try:
            raw = self._history.encode(record)
        except Exception as exc:
            return b"", f"the saga log record cannot be encoded: {exc!r}"
        if len(raw) > self._record_cap:
            return b"", (
                f"the saga log record would be {len(raw):,} bytes, over the cap of "
                f"{self._record_cap:,} (half of kafka.max_message_bytes): send a "
                "smaller saga input or reply payload"
            )
        try:
            self._history.decode(raw)
        except Exception as exc:
            return b"", f"the saga log record would not read back: {exc}"
        return raw, ""

    def dead(
        self,
        batch: Batch,
        inbound: Inbound,
        error: str,
        now: int,
        message: Message | None = None,
        saga: SagaState | None = None,
        step: str = "",
    ) -> None:
        """Stage a dead letter for the record ``inbound``; ``saga`` is the state
        of its saga when the host holds it (its type and status go on the
        letter), ``step`` the step it is about when there is no message."""
        batch.report["dead_letters"] += 1
        batch.letters.append(
            DeadLetter.of(
                inbound.where,
                inbound.key,
                inbound.value,
                error=error,
                source=SAGA_HOST,
                at=datetime.fromtimestamp(now / 1000, UTC),
                max_message_bytes=self._max_message_bytes,
                message=message,
                saga=None if saga is None else (saga.saga_type, str(saga.status)),
                step=step,
            )
        )

    def dead_timer(
        self,
        batch: Batch,
        log_end: tuple[int, int],
        state: SagaState,
        now: int,
        error: str,
    ) -> None:
        """A deadline the saga could not act on (see :meth:`dead_state`)."""
        self.dead_state(
            batch,
            log_end,
            state,
            now,
            f"the deadline of saga {state.saga_id} (step {state.step_id!r}, attempt "
            f"{state.attempt}) could not be acted on: {error}",
        )

    def dead_state(
        self,
        batch: Batch,
        log_end: tuple[int, int],
        state: SagaState,
        now: int,
        error: str,
    ) -> None:
        """A letter about a saga, not a message: it carries the saga's state and
        names its log partition and end (``saga dlq replay`` refuses to write it
        there: there is no original message to re-send)."""
        partition, end = log_end
        where = Inbound(
            SAGA_EVENTS, partition, end, state.saga_id, _STATE_ENCODER.encode(state)
        )
        self.dead(batch, where, error, now, saga=state, step=state.step_id)

    def append(self, batch: Batch) -> list[Ack]:
        """Append the batch's letters, then its records; all acknowledged or
        raise. Returns the records' acknowledgements, in their order."""
        if batch.letters:
            self._publisher.send_all(
                Outgoing(
                    SAGA_DLQ, letter.key, self._letters.encode(letter), letter.partition
                )
                for letter in batch.letters
            )
        return self._publisher.send_all(
            Outgoing(SAGA_EVENTS, record.saga_id, raw, partition)
            for partition, record, raw in batch.records
        )
