"""``SagaHost``: many sagas in one process, for the partitions it owns.

A host keeps the in-flight sagas of its partitions in memory, each as the fold of
its events. It takes inputs in batches (from the router, and from its own timer
thread), runs each through the pure core one at a time and in order, and then:

1. appends the decisions' saga events to ``saga.events`` (one record per
   decision, on the saga's home partition) and any dead letters to ``saga.dlq``,
   and waits until the broker has acknowledged every one (write-ahead);
2. only then makes the new states current and publishes the commands.

If step 1 fails, nothing in memory changed and the caller retries the batch. A
host that dies loses nothing: on start it restores its partitions from the
newest snapshot plus the log tail, re-arms every deadline and re-sends every
command still awaiting an answer (same messageId, so participants see a
duplicate). Sagas that end leave memory; their ids stay in a bounded set, so a
late duplicate for them is dropped instead of dead-lettered.

The class has no Ray in it: :mod:`actors.runtime` makes it a Ray actor, and
tests and benchmarks can drive it in-process.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TypeAlias

import msgspec

from actors.core import (
    DEFINITIONS,
    OUTCOMES,
    CompensationCommanded,
    Decision,
    HistoryCodec,
    Input,
    LogRecord,
    Reply,
    SagaCompensated,
    SagaCompleted,
    SagaDefinition,
    SagaFailed,
    SagaRejected,
    SagaState,
    Send,
    Start,
    StepCommanded,
    Tick,
    Verdict,
    decide,
    late_reason,
    parse_start,
    pending_command,
    replay,
)
from actors.engine.settings import HostSettings
from actors.engine.snapshots import SnapshotStore
from actors.errors import RestoreError, SagaError
from events.errors import (
    EventsError,
    MessageDecodeError,
    MissingTopicError,
    TopicPartitionMismatchError,
)
from events.transport.admin import TopicAdmin
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, Outgoing
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.messages import EventMessage, Message, MessageCodec
from events.wire.topics import ALL_TOPICS, SAGA_DLQ, SAGA_EVENTS, SAGA_REQUESTS

log = logging.getLogger(__name__)

_STATE_ENCODER = msgspec.json.Encoder()

#: A consumed record as the router hands it over: (topic, partition, offset,
#: key, value). Plain tuples cross the Ray boundary cheaply.
Inbound: TypeAlias = tuple[str, int, int, str | None, bytes]


class HandleReport(msgspec.Struct, frozen=True):
    """What a batch did: the router counts these."""

    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    #: Late successes of steps given up on in doubt (dead-lettered too).
    late_replies: int = 0


class HostStats(msgspec.Struct, frozen=True):
    partitions: list[int]
    in_flight: int
    finished: int
    applied: int
    duplicates: int
    dead_letters: int
    timers_fired: int
    snapshots: int
    restored_sagas: int
    restored_records: int
    restore_s: float
    resent: int
    #: Commands a restore queued for re-sending that have not gone out yet.
    resend_pending: int
    late_replies: int = 0


class HostMetrics(msgspec.Struct):
    """Counters since the host process started (Prometheus sums restarts out
    with ``increase``/``rate``)."""

    started: dict[str, int] = {}  # by saga type
    finished: dict[str, int] = {}  # by "<saga type>/<outcome>"
    produced: dict[str, int] = {}  # by topic
    retries: int = 0  # commands sent again as a new attempt
    dead_letters: int = 0
    duplicates: int = 0
    in_flight: int = 0
    #: Successes that arrived for a step the saga had given up on in doubt.
    late_replies: int = 0


class HostUnavailableError(SagaError):
    """The host could not make a batch durable; nothing of it was applied."""


class _Restored(NamedTuple):
    sagas: int
    records: int
    seconds: float


#: Re-sends per timer tick after a restore: bounded, so a big restore does not
#: hold the host's lock for long.
_RESEND_PER_TICK = 2_000


class _Partition:
    """One owned partition: its live sagas and the books of ended ones."""

    __slots__ = (
        "doubtful",
        "end",
        "finished",
        "finished_order",
        "late",
        "manifest",
        "sagas",
        "since",
    )

    def __init__(self) -> None:
        self.sagas: dict[str, SagaState] = {}
        self.finished: set[str] = set()
        self.finished_order: deque[str] = deque()
        #: Ended sagas that compensated a step in doubt, and that step: a late
        #: success for it must be reported, not dropped as a duplicate.
        self.doubtful: dict[str, str] = {}
        #: Live sagas whose late success was reported already: the copies that
        #: follow (one per attempt sent) are duplicates. Memory only: after a
        #: restart a copy may be reported once more.
        self.late: set[str] = set()
        self.end = 0  # the log offset after the last record of this partition
        self.since = 0  # events appended since the last snapshot
        self.manifest = -1  # offset of the newest snapshot manifest

    def finish(self, saga_id: str, retention: int, doubtful: str = "") -> None:
        self.sagas.pop(saga_id, None)
        if saga_id in self.finished:
            return
        self.finished.add(saga_id)
        self.finished_order.append(saga_id)
        if doubtful:
            self.doubtful[saga_id] = doubtful
        while len(self.finished_order) > retention:
            gone = self.finished_order.popleft()
            self.finished.discard(gone)
            self.doubtful.pop(gone, None)


class _Batch:
    """Decisions staged until their events are durable."""

    __slots__ = ("late", "letters", "records", "report", "sends", "staged")

    def __init__(self) -> None:
        self.staged: dict[str, tuple[int, SagaState]] = {}
        #: (partition, record, its encoding: checked once, sent as is)
        self.records: list[tuple[int, LogRecord, bytes]] = []
        self.letters: list[DeadLetter] = []
        self.sends: list[tuple[int, Send]] = []
        #: (partition, sagaId) whose late success this batch reports.
        self.late: set[tuple[int, str]] = set()
        self.report = dict.fromkeys(
            ("applied", "duplicates", "dead_letters", "late_replies"), 0
        )


class SagaHost:
    """Hosts the sagas of ``partitions`` (of ``partition_count`` in all)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        partitions: Sequence[int],
        partition_count: int,
        settings: HostSettings | None = None,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
        *,
        clock: Callable[[], float] = time.time,
        start_timers: bool = True,
    ) -> None:
        self._kafka = kafka
        self._settings = settings or HostSettings()
        self._definitions = definitions
        self._count = partition_count
        self._clock = clock
        self._random = random.Random()
        self._lock = threading.RLock()
        self._codec = MessageCodec(kafka.max_message_bytes)
        self._history = HistoryCodec()
        self._letters = DeadLetterCodec()
        self._record_cap = kafka.max_message_bytes // 2
        self._parts = {p: _Partition() for p in sorted(set(partitions))}
        # (fire at, sagaId, partition, the deadline it was armed for)
        self._timers: list[tuple[int, str, int, int]] = []
        self._counters = dict.fromkeys(
            (
                "applied",
                "duplicates",
                "dead_letters",
                "late_replies",
                "timers",
                "snapshots",
                "resent",
            ),
            0,
        )
        self._resend: deque[tuple[int, str, int]] = deque()
        self._metrics = HostMetrics()
        self._restored = _Restored(0, 0, 0.0)
        self._stale = False
        with TopicAdmin(kafka) as admin:
            admin.check_topics(ALL_TOPICS, partition_count)
        self._publisher = KafkaMessagePublisher(kafka)
        self._snapshots = SnapshotStore(kafka, self._publisher)
        self._restore_patiently()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if start_timers:
            self._thread = threading.Thread(
                target=self._run_timers, name="saga-timers", daemon=True
            )
            self._thread.start()

    # -- the API the router and the client call ----------------------------

    def handle(self, batch: Sequence[Inbound]) -> HandleReport:
        """Apply a batch of consumed records. Returns once every resulting saga
        event and dead letter is durable; raises :class:`HostUnavailableError`
        (having changed nothing) if they could not be made so."""
        with self._lock:
            if self._stale:
                self._reload()
            now = self._now()
            work = _Batch()
            for inbound in batch:
                try:
                    self._apply(work, inbound, now)
                except Exception as exc:
                    # A bug must not stall the partition: the record is parked
                    # where a person sees it, and the rest of the batch goes on.
                    log.exception("applying %s/%d/%d failed", *inbound[:3])
                    self._dead(work, inbound, f"internal error: {exc!r}", now)
            self._commit(work)
            return HandleReport(**work.report)

    def state(self, saga_id: str) -> SagaState | None:
        """The live state of an in-flight saga hosted here (``None`` otherwise)."""
        part = self._parts.get(home_partition(saga_id, self._count))
        return None if part is None else part.sagas.get(saga_id)

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> HostStats:
        with self._lock:
            return HostStats(
                partitions=sorted(self._parts),
                in_flight=sum(len(p.sagas) for p in self._parts.values()),
                finished=sum(len(p.finished) for p in self._parts.values()),
                applied=self._counters["applied"],
                duplicates=self._counters["duplicates"],
                dead_letters=self._counters["dead_letters"],
                timers_fired=self._counters["timers"],
                snapshots=self._counters["snapshots"],
                restored_sagas=self._restored.sagas,
                restored_records=self._restored.records,
                restore_s=self._restored.seconds,
                resent=self._counters["resent"],
                resend_pending=len(self._resend),
                late_replies=self._counters["late_replies"],
            )

    def snapshot(self) -> None:
        """Snapshot every owned partition now (also done every N events)."""
        with self._lock:
            for number in self._parts:
                self._snapshot(number)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._publisher.close()

    # -- applying inputs ---------------------------------------------------

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _apply(self, work: _Batch, inbound: Inbound, now: int) -> None:
        topic, partition, offset, key, value = inbound
        try:
            message = self._codec.decode(value)
        except MessageDecodeError as exc:
            self._dead(work, inbound, str(exc), now)
            return
        saga_id = message.saga_id
        if key is not None and key != saga_id:
            self._dead(
                work,
                inbound,
                f"key {key!r} differs from sagaId {saga_id!r}: messages must be "
                "keyed by their sagaId",
                now,
                message,
            )
            return
        number = home_partition(saga_id, self._count)
        part = self._parts.get(number)
        if part is None:
            self._dead(
                work,
                inbound,
                f"saga {saga_id} lives on partition {number}, which this host "
                f"does not own ({sorted(self._parts)}): misrouted",
                now,
                message,
            )
            return
        staged = work.staged.get(saga_id)
        state = staged[1] if staged else part.sagas.get(saga_id)
        item: Input
        if topic == SAGA_REQUESTS:
            try:
                definition, request = parse_start(message, self._definitions)
            except SagaError as exc:
                self._dead(work, inbound, str(exc), now, message)
                return
            if state is None and saga_id in part.finished:
                work.report["duplicates"] += 1
                return
            item = Start(
                saga_id=saga_id,
                saga_type=definition.name,
                input=request.input,
                now=now,
            )
        else:
            if not isinstance(message, EventMessage):
                self._dead(
                    work,
                    inbound,
                    f"{topic} takes replies (type 'event'), got a command",
                    now,
                    message,
                )
                return
            if state is None:
                late = part.doubtful.get(saga_id)
                if (
                    message.success
                    and late is not None
                    and message.step_id == late
                    and (number, saga_id) not in work.late
                ):
                    work.late.add((number, saga_id))
                    work.report["late_replies"] += 1
                    self._dead(
                        work, inbound, late_reason(saga_id, late, "ended"), now, message
                    )
                elif saga_id in part.finished:
                    work.report["duplicates"] += 1
                else:
                    self._dead(
                        work,
                        inbound,
                        f"no saga {saga_id} is known: never started, or it ended "
                        "before the last "
                        f"{self._settings.finished_retention} sagas of its partition",
                        now,
                        message,
                    )
                return
            definition = self._definitions[state.saga_type]
            item = Reply(
                saga_id=saga_id,
                topic=topic,
                step_id=message.step_id,
                message_id=message.message_id,
                success=message.success,
                payload=message.payload,
                error=message.error,
                now=now,
                jitter=self._random.random(),
                command_id=message.command_id,
            )
        decision = decide(definition, state, item)
        if decision.verdict is Verdict.LATE:
            if saga_id in part.late or (number, saga_id) in work.late:
                work.report["duplicates"] += 1
                return
            work.late.add((number, saga_id))
            work.report["late_replies"] += 1
        if decision.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
            self._dead(work, inbound, decision.reason, now, message)
            return
        refused = self._stage(
            work, number, state, decision, now, f"{topic}/{partition}/{offset}"
        )
        if refused:
            self._dead(work, inbound, refused, now, message)

    def _stage(
        self,
        work: _Batch,
        number: int,
        before: SagaState | None,
        decision: Decision,
        now: int,
        cause: str,
    ) -> str:
        """Stage an applied decision; returns why it cannot be logged ("" if
        it can), in which case nothing of it is staged."""
        if decision.verdict is Verdict.DUPLICATE:
            work.report["duplicates"] += 1
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
        )
        raw, refused = self._encoded(record)
        if refused:
            return refused
        work.report["applied"] += 1
        work.staged[state.saga_id] = (number, state)
        work.records.append((number, record, raw))
        work.sends.extend((number, send) for send in decision.commands)
        return ""

    def _encoded(self, record: LogRecord) -> tuple[bytes, str]:
        """The record's bytes, or why it cannot be logged. Each is read back
        through the log codec before it is accepted, so the log never holds a
        record that a restore or a reader could not decode; and it stays well
        under the broker's record limit, so an append cannot fail for good."""
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

    def _dead(
        self,
        work: _Batch,
        inbound: Inbound,
        error: str,
        now: int,
        message: Message | None = None,
    ) -> None:
        topic, partition, offset, key, value = inbound
        work.report["dead_letters"] += 1
        # Base64 makes the payload a third larger: an oversized original is
        # kept in part (its size recorded), or the letter itself could not be
        # written. The original stays on its topic at its offset.
        keep = self._kafka.max_message_bytes // 2
        work.letters.append(
            DeadLetter(
                topic=topic,
                partition=partition,
                offset=offset,
                error=error,
                dead_at=datetime.fromtimestamp(now / 1000, UTC),
                source="saga-host",
                payload=value[:keep],
                payload_size=len(value),
                key=key,
                message_id=None if message is None else message.message_id,
                saga_id=key if message is None else message.saga_id,
            )
        )

    def _dead_timer(
        self, work: _Batch, number: int, state: SagaState, now: int, error: str
    ) -> None:
        """A deadline the saga could not act on: the letter carries the saga's
        state and names its log partition (``saga dlq replay`` refuses to write
        it there: there is no original message to re-send)."""
        where = (SAGA_EVENTS, number, self._parts[number].end)
        self._dead(
            work,
            (*where, state.saga_id, _STATE_ENCODER.encode(state)),
            f"the deadline of saga {state.saga_id} (step {state.step_id!r}, attempt "
            f"{state.attempt}) could not be acted on: {error}",
            now,
        )

    # -- making a batch durable, then current -------------------------------

    def _commit(self, work: _Batch) -> None:
        if not (work.records or work.letters):
            self._counters["duplicates"] += work.report["duplicates"]
            return
        try:
            acks = self._append(work)
        except BaseException as exc:
            # Part of the batch may have landed: memory no longer says what
            # the log says. Rebuild from the log before the next input.
            self._stale = True
            if isinstance(exc, EventsError):
                raise HostUnavailableError(
                    f"saga events not acknowledged: {exc}"
                ) from exc
            raise
        # Durable: now the new states become current.
        for (number, record, _), ack in zip(work.records, acks, strict=False):
            part = self._parts[number]
            part.end = max(part.end, ack.offset + 1)
            part.since += len(record.events)
        for number, saga_id in work.late:
            # Reported: an ended saga's book forgets the step, a live saga
            # remembers the report until it ends.
            part = self._parts[number]
            if part.doubtful.pop(saga_id, None) is None:
                part.late.add(saga_id)
        retention = self._settings.finished_retention
        for saga_id, (number, state) in work.staged.items():
            part = self._parts[number]
            if state.status.terminal:
                reported = saga_id in part.late
                part.late.discard(saga_id)
                part.finish(saga_id, retention, "" if reported else state.doubtful)
            else:
                part.sagas[saga_id] = state
                if state.deadline:
                    entry = (state.deadline, saga_id, number, state.deadline)
                    heapq.heappush(self._timers, entry)
        self._tally(work)
        for number, send in work.sends:
            self._send(number, send)
        for key, count in work.report.items():
            self._counters[key] += count
        for number, part in self._parts.items():
            if part.since >= self._settings.snapshot_every:
                try:
                    self._snapshot(number)
                except Exception:
                    # The log alone still restores everything; try again later.
                    log.exception("snapshot of partition %d failed", number)
                    part.since = self._settings.snapshot_every // 2

    def _append(self, work: _Batch) -> list[Ack]:
        """Append the batch's records, then its letters; all acknowledged or
        raise. The acknowledgements come in the same order."""
        return self._publisher.send_all(
            [
                Outgoing(SAGA_EVENTS, record.saga_id, raw, number)
                for number, record, raw in work.records
            ]
            + [
                Outgoing(
                    SAGA_DLQ, letter.key, self._letters.encode(letter), letter.partition
                )
                for letter in work.letters
            ]
        )

    def _tally(self, work: _Batch) -> None:
        """The batch in the host's metrics (read by the /metrics endpoint)."""
        metrics = self._metrics
        produced = metrics.produced
        produced[SAGA_EVENTS] = produced.get(SAGA_EVENTS, 0) + len(work.records)
        if work.letters:
            produced[SAGA_DLQ] = produced.get(SAGA_DLQ, 0) + len(work.letters)
        for _, send in work.sends:
            produced[send.topic] = produced.get(send.topic, 0) + 1
        for _, record, _ in work.records:
            if record.seq == 1:
                metrics.started[record.saga_type] = (
                    metrics.started.get(record.saga_type, 0) + 1
                )
            for event in record.events:
                match event:
                    case StepCommanded(attempt=a) | CompensationCommanded(attempt=a):
                        if a > 1:
                            metrics.retries += 1
                    case (
                        SagaCompleted()
                        | SagaCompensated()
                        | SagaRejected()
                        | SagaFailed()
                    ):
                        key = f"{record.saga_type}/{OUTCOMES[type(event)]}"
                        metrics.finished[key] = metrics.finished.get(key, 0) + 1

    def metrics(self) -> HostMetrics:
        with self._lock:
            in_flight = sum(len(p.sagas) for p in self._parts.values())
            return msgspec.structs.replace(
                self._metrics,
                in_flight=in_flight,
                dead_letters=self._counters["dead_letters"],
                duplicates=self._counters["duplicates"],
                late_replies=self._counters["late_replies"],
            )

    def _send(self, number: int, send: Send) -> None:
        """Publish a command whose saga events are durable. A send that fails is
        not retried here: the saga's deadline re-sends it as the next attempt."""
        try:
            self._publisher.publish(send.topic, send.message, partition=number)
        except Exception:
            log.exception("sending %s failed", send.message.message_id)

    def _snapshot(self, number: int) -> None:
        # A snapshot vouches that its sagas' commands went out (see _rearm).
        self._send_again(None)
        part = self._parts[number]
        part.manifest = self._snapshots.write(
            number,
            part.end,
            list(part.sagas.values()),
            list(part.finished_order),
            dict(part.doubtful),
            part.manifest,
        )
        part.since = 0
        self._counters["snapshots"] += 1

    # -- timers ---------------------------------------------------------------

    def _run_timers(self) -> None:
        interval = self._settings.tick_ms / 1000
        while not self._stopping.wait(interval):
            try:
                self.fire_timers()
            except Exception:
                # The due timers were put back (or the host reloads from the
                # log first); the next tick tries again.
                log.exception("firing saga timers failed")

    def fire_timers(self) -> int:
        """Act on every deadline that has passed; returns how many sagas acted.
        Also sends a share of the commands queued for re-sending by a restore."""
        with self._lock:
            self._send_again(_RESEND_PER_TICK)
            if self._stale:
                self._reload()
            now = self._now()
            due: list[tuple[int, str, int, int]] = []
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers))
            work = _Batch()
            fired = 0
            for _, saga_id, number, deadline in due:
                state = self._parts[number].sagas.get(saga_id)
                if state is None or state.deadline != deadline:
                    continue  # ended, or re-armed since: a stale entry
                tick = Tick(saga_id=saga_id, now=now, jitter=self._random.random())
                try:
                    decision = decide(self._definitions[state.saga_type], state, tick)
                    refused = self._stage(work, number, state, decision, now, "timer")
                except Exception as exc:
                    # One saga's bug must not cost the others their timers. This
                    # one stays as it is, and a person is told through the DLQ.
                    log.exception("deciding the deadline of saga %s failed", saga_id)
                    refused = f"internal error: {exc!r}"
                if refused:
                    self._dead_timer(work, number, state, now, refused)
                    continue
                fired += 1
            try:
                self._commit(work)
            except Exception:
                for entry in due:
                    heapq.heappush(self._timers, entry)
                raise
            self._counters["timers"] += fired
            return fired

    # -- restore --------------------------------------------------------------

    def _restore_patiently(self) -> None:
        """Restore, waiting out a broker that is down: a Ray actor whose
        constructor raises is dead for good, and its partitions with it."""
        delay = 0.5
        while True:
            try:
                self._restore()
                return
            except (MissingTopicError, TopicPartitionMismatchError, RestoreError):
                raise  # waiting will not fix these
            except EventsError as exc:
                log.warning("restore failed, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self._parts = {p: _Partition() for p in self._parts}

    def _reload(self) -> None:
        """Forget memory and rebuild it from the log: after an append of unknown
        outcome, the log is the truth and memory may disagree with it (the
        publisher has replaced its producer already: see
        :meth:`KafkaMessagePublisher.send_all`)."""
        log.warning("rebuilding partitions %s from the log", sorted(self._parts))
        self._parts = {p: _Partition() for p in self._parts}
        self._timers.clear()
        self._resend.clear()
        self._restore()
        self._stale = False

    def _restore(self) -> None:
        started = time.perf_counter()
        with PartitionReader(self._kafka) as reader:
            touched = self._load(reader)
        self._rearm(touched)
        seconds = time.perf_counter() - started
        self._restored = _Restored(
            self._restored.sagas, self._restored.records, seconds
        )
        log.info(
            "restored partitions %s: %d sagas from snapshots, %d log records, "
            "%d commands to re-send, in %.2f s",
            sorted(self._parts),
            self._restored.sagas,
            self._restored.records,
            len(self._resend),
            seconds,
        )

    def _load(self, reader: PartitionReader) -> set[str]:
        """Newest snapshot + log tail into memory; returns the sagaIds the tail
        moved (their latest commands may not have gone out before the crash)."""
        snapshots = self._snapshots.latest(reader, self._parts)
        sagas = records = 0
        for number, snapshot in snapshots.items():
            part = self._parts[number]
            part.sagas = {s.saga_id: s for s in snapshot.sagas}
            for saga_id in snapshot.finished:
                part.finish(
                    saga_id,
                    self._settings.finished_retention,
                    snapshot.doubtful.get(saga_id, ""),
                )
            part.end = snapshot.log_offset
            part.manifest = snapshot.manifest_offset
            sagas += len(snapshot.sagas)
        starts = {
            TP(SAGA_EVENTS, number): snapshot.log_offset
            for number, snapshot in snapshots.items()
        }
        touched: set[str] = set()
        for raw in reader.read(starts):
            part = self._parts[raw.partition]
            touched.add(self._replay(part, raw.partition, raw.offset, raw.value))
            part.end = raw.offset + 1
            part.since += 1
            records += 1
        self._restored = _Restored(sagas, records, 0.0)
        return touched

    def _replay(self, part: _Partition, number: int, offset: int, value: bytes) -> str:
        try:
            record = self._history.decode(value or b"")
        except MessageDecodeError as exc:
            raise RestoreError(
                f"{SAGA_EVENTS} partition {number} offset {offset} is not a saga "
                f"log record: {exc}"
            ) from exc
        if record.saga_id in part.finished:
            return record.saga_id
        try:
            state = replay(part.sagas.get(record.saga_id), record)
        except RestoreError as exc:
            raise RestoreError(
                f"{SAGA_EVENTS} partition {number} offset {offset}: {exc}"
            ) from None
        assert state is not None
        if state.status.terminal:
            part.finish(
                record.saga_id, self._settings.finished_retention, state.doubtful
            )
        else:
            part.sagas[record.saga_id] = state
        return record.saga_id

    def _rearm(self, touched: set[str]) -> None:
        """Deadlines back on the timer heap; the commands the log tail issued
        queued to be sent again.

        A saga whose state came from the snapshot alone had its commands
        acknowledged before the snapshot was written (writing one flushes the
        producer), so only the tail's sagas are re-sent: after a crash, not
        every in-flight saga's participant gets a duplicate. The re-sends go
        out from the timer thread, so the host takes work as soon as its state
        is back.
        """
        # Replies that came while the host was down are still in Kafka: a
        # deadline that passed meanwhile waits a grace period for them, rather
        # than spend an attempt on a reply that is already there.
        grace = self._now() + self._settings.restore_grace_ms
        for number, part in self._parts.items():
            for saga_id, state in part.sagas.items():
                if state.deadline:
                    fire_at = max(state.deadline, grace)
                    self._timers.append((fire_at, saga_id, number, state.deadline))
                if saga_id in touched:
                    self._resend.append((number, saga_id, state.seq))
        heapq.heapify(self._timers)

    def _send_again(self, limit: int | None) -> None:
        """Re-send up to ``limit`` queued commands (all for ``None``), skipping
        sagas that have moved on since: their newer command went out already."""
        now = self._now()
        sent = 0
        while self._resend and (limit is None or sent < limit):
            number, saga_id, seq = self._resend.popleft()
            state = self._parts[number].sagas.get(saga_id)
            if state is None or state.seq != seq:
                continue
            send = pending_command(self._definitions[state.saga_type], state, now)
            if send is not None:
                self._send(number, send)
                sent += 1
        if sent:
            self._publisher.flush()
        self._counters["resent"] += sent


def owned_partitions(host: int, hosts: int, partitions: int) -> list[int]:
    """The partitions host number ``host`` of ``hosts`` owns: every hosts-th."""
    return [p for p in range(partitions) if p % hosts == host]
