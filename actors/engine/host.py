"""``SagaHost``: many sagas in one process, for the partitions it owns.

A host keeps the in-flight sagas of its partitions in memory, each as the fold of
its events (:mod:`actors.engine.books`). It takes inputs in batches (from the
router, and from its own timer thread), turns each record into an input of the
pure core (:mod:`actors.engine.inbound`), decides them one at a time and in
order, and then:

1. appends the decisions' saga events to ``saga.events`` (one record per
   decision, on the saga's home partition) and any dead letters to ``saga.dlq``,
   and waits until the broker has acknowledged every one
   (:mod:`actors.engine.write_ahead`);
2. only then makes the new states current and publishes the commands.

If step 1 fails, nothing in memory changed and the caller retries the batch.

A host owns no partition until the controller grants it one
(:mod:`actors.engine.claims`): it appends a claim at the granted epoch,
restores up to it from the newest snapshot plus the log tail
(:mod:`actors.engine.restore`), re-arms every deadline
(:mod:`actors.engine.timers`) and re-sends every command still awaiting an
answer (same messageId, so participants see a duplicate). A host that dies
loses nothing: the controller grants its partitions again, to it once Ray
restarted it or to another host. Records for a partition the host does not
own are answered "not owned" (the router asks the controller where they go
now), never dead-lettered.

A host that was replaced (paused past its move, say) must write nothing a
reader applies and send nothing: each append must land right after the host's
last record on that partition, and the host checks each partition's end when
idle. Anything else on its partition means another writer: the batch is not
made current, no command goes out, and the host rebuilds from the log, where
a newer claim takes the partition from it (:class:`~actors.core.Fence`).

Sagas that end leave memory; their ids stay in a bounded set, so a late
duplicate for them is dropped instead of dead-lettered.

The class has no Ray in it: :mod:`actors.runtime` makes it a Ray actor, and
tests and benchmarks can drive it in-process.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence

from actors.core import (
    DEFINITIONS,
    Reply,
    SagaDefinition,
    SagaState,
    Send,
    Tick,
    Verdict,
    decide,
    late_reason,
    pending_command,
)
from actors.engine import restore
from actors.engine.books import PartitionBooks
from actors.engine.claims import Incarnation, Ownership, Taken, foreign_writes, take
from actors.engine.clock import SteadyClock
from actors.engine.inbound import (
    Inbound,
    Refused,
    home_of,
    misrouted,
    read_message,
    to_input,
    unknown_saga,
)
from actors.engine.settings import HostSettings
from actors.engine.snapshots import SnapshotStore
from actors.engine.stats import HandleReport, HostMetrics, HostStats, host_stats
from actors.engine.timers import ResendQueue, Timers
from actors.engine.watch import FenceCheck, LogWatch
from actors.engine.write_ahead import Batch, WriteAhead
from actors.errors import HostUnavailableError
from events.errors import EventsError, LogLostError
from events.transport.admin import TopicAdmin
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import Ack, LogIdentity
from events.wire.messages import MessageCodec
from events.wire.topics import ALL_TOPICS, SAGA_EVENTS

log = logging.getLogger(__name__)

#: Re-sends per timer tick after a restore: bounded, so a big restore does not
#: hold the host's lock for long.
_RESEND_PER_TICK = 2_000

_COUNTERS = (
    "applied",
    "duplicates",
    "dead_letters",
    "late_replies",
    "timers",
    "snapshots",
    "resent",
)


class SagaHost:
    """Hosts the sagas of the partitions (of ``partition_count``) it is granted.

    ``name`` and ``engine`` go into its claims (the Ray actor's name, and its
    engine's id); ``node`` is where it runs, for people."""

    def __init__(
        self,
        kafka: KafkaSettings,
        partition_count: int,
        settings: HostSettings | None = None,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
        *,
        name: str = "saga-host",
        engine: str = "",
        node: str = "",
        clock: Callable[[], float] | None = None,
        start_timers: bool = True,
        identity: LogIdentity | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings or HostSettings()
        self._definitions = definitions
        self._count = partition_count
        self._clock = clock or SteadyClock()
        self._random = random.Random()
        self._lock = threading.RLock()
        self._codec = MessageCodec(kafka.max_message_bytes)
        self._me = Incarnation(name, engine, node, uuid.uuid4().hex[:12], os.getpid())
        #: The partitions owned, and those lost to a newer claim since.
        self._parts: dict[int, PartitionBooks] = {}
        self._fenced: dict[int, Taken] = {}
        self._timers = Timers()
        self._resend = ResendQueue()
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._metrics = HostMetrics()
        self._restored = restore.Restored(0, 0, 0.0)
        self._stale = False
        self._watch = LogWatch(identity, kafka.consumer.loss_grace_ms)
        # The producer connects on its first send; the topics are checked and
        # the books restored patiently. A broker that is down is waited out: a
        # Ray actor whose constructor raises is dead for good.
        self._publisher = KafkaMessagePublisher(kafka, connect=False)
        self._write_ahead = WriteAhead(self._publisher, kafka.max_message_bytes)
        self._snapshots = SnapshotStore(
            kafka, self._publisher, writer=self._me.incarnation
        )
        self._fence_check = FenceCheck(kafka, self._settings.fence_check_ms)

        def check_topics() -> None:
            with TopicAdmin(kafka) as admin:
                admin.check_topics(ALL_TOPICS, partition_count)
                self._watch.check_identity(admin)

        try:
            restore.patiently(check_topics, again=lambda: None)
        except LogLostError as exc:
            # Stay up to say so: a restart would meet the same loss.
            self._watch.stop(exc)
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
        (having changed nothing) if they could not be made so. Records of
        partitions not owned here are left alone and reported ``not_owned``."""
        with self._lock, self._watch.guard():
            if self._stale:
                self._reload()
            now = self._now()
            work = Batch()
            for raw in batch:
                inbound = Inbound(*raw)
                routed = home_of(inbound, self._count)
                if routed not in self._parts:
                    work.not_owned.add(routed)
                    continue
                try:
                    self._apply(work, inbound, now)
                except Exception as exc:
                    # A bug must not stall the partition: the record is parked
                    # where a person sees it, and the rest of the batch goes on.
                    log.exception("applying %s failed", inbound)
                    self._write_ahead.dead(
                        work, inbound, f"internal error: {exc!r}", now
                    )
            self._commit(work)
            return HandleReport(**work.report, not_owned=sorted(work.not_owned))

    # -- ownership, as the controller grants it ------------------------------

    def acquire(self, grants: Mapping[int, int]) -> list[Taken]:
        """Claim each partition of ``grants`` at its epoch, restored up to the
        claim (:func:`actors.engine.claims.take`); says what became of each."""
        with self._lock, self._watch.guard():
            if self._stale:
                self._reload()
            mine = {n: e for n, e in grants.items() if n not in self._parts}
            takeover = take(
                self._kafka,
                self._snapshots,
                self._publisher,
                mine,
                self._me,
                self._settings.finished_retention,
                self._now(),
            )
            for number, part in takeover.books.items():
                self._parts[number] = part
                self._fenced.pop(number, None)
            restore.rearm(
                takeover.books,
                self._timers,
                self._resend,
                takeover.touched,
                self._now() + self._settings.restore_grace_ms,
            )
            self._restored = restore.report(
                takeover.books, takeover.counts, self._resend
            )
            held = [
                Taken(partition=n, epoch=self._parts[n].epoch, won=True)
                for n in grants
                if n not in mine
            ]
            return [*held, *takeover.taken]

    def release(self, partitions: Sequence[int]) -> None:
        """Give partitions up (to be granted elsewhere): a last snapshot each,
        so the next owner's restore is short, then their books go."""
        with self._lock, self._watch.guard():
            if self._stale:
                self._reload()
            for number in partitions:
                if number not in self._parts:
                    continue
                try:
                    self._snapshot(number)
                except Exception:
                    log.exception("the last snapshot of partition %d failed", number)
                del self._parts[number]
            log.info("released partitions %s", sorted(partitions))

    def ownership(self) -> Ownership:
        """What this host owns, at which epochs, and what it lost since."""
        with self._lock:
            return Ownership(
                host=self._me,
                owned={n: part.epoch for n, part in self._parts.items()},
                fenced=dict(self._fenced),
                log_lost=self._watch.lost,
            )

    def state(self, saga_id: str) -> SagaState | None:
        """The live state of an in-flight saga hosted here (``None`` otherwise)."""
        part = self._parts.get(home_partition(saga_id, self._count))
        return None if part is None else part.sagas.get(saga_id)

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> HostStats:
        with self._lock:
            return host_stats(
                self._parts,
                self._counters,
                self._restored,
                resend_pending=len(self._resend),
                log_lost=self._watch.lost,
            )

    def metrics(self) -> HostMetrics:
        with self._lock:
            return self._metrics.now(self._parts, self._counters, self._watch.lost)

    def snapshot(self) -> None:
        """Snapshot every owned partition now (also done every N events)."""
        with self._lock, self._watch.guard():
            for number in self._parts:
                self._snapshot(number)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._publisher.close()
        self._fence_check.close()

    # -- applying inputs ---------------------------------------------------

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _apply(self, work: Batch, inbound: Inbound, now: int) -> None:
        message = read_message(self._codec, inbound)
        if isinstance(message, Refused):
            self._write_ahead.dead(work, inbound, message.reason, now, message.message)
            return
        saga_id = message.saga_id
        number = home_partition(saga_id, self._count)
        part = self._parts.get(number)
        if part is None:
            reason = misrouted(saga_id, number, sorted(self._parts))
            self._write_ahead.dead(work, inbound, reason, now, message)
            return
        item = to_input(inbound, message, self._definitions, now, self._random.random())
        if isinstance(item, Refused):
            self._write_ahead.dead(work, inbound, item.reason, now, message)
            return
        state = work.state_of(saga_id, part)
        if state is not None:
            saga_type = state.saga_type
        elif isinstance(item, Reply):
            reason = _reply_to_ended(work, number, part, item)
            if reason:
                self._write_ahead.dead(work, inbound, reason, now, message)
            return
        elif saga_id in part.finished:
            work.report["duplicates"] += 1  # a start request again, for an ended saga
            return
        else:
            saga_type = item.saga_type
        decision = decide(self._definitions[saga_type], state, item)
        if decision.verdict is Verdict.LATE:
            if saga_id in part.late or (number, saga_id) in work.late:
                work.report["duplicates"] += 1
                return
            work.late.add((number, saga_id))
            work.report["late_replies"] += 1
        if decision.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
            self._write_ahead.dead(work, inbound, decision.reason, now, message)
            return
        refused = self._write_ahead.stage(
            work, (number, part.end), state, decision, now, str(inbound), part.epoch
        )
        if refused:
            self._write_ahead.dead(work, inbound, refused, now, message)

    # -- making a batch durable, then current -------------------------------

    def _commit(self, work: Batch) -> None:
        if work.empty:
            self._counters["duplicates"] += work.report["duplicates"]
            return
        ends = {number: self._parts[number].end for number, _, _ in work.records}
        try:
            acks = self._write_ahead.append(work)
        except BaseException as exc:
            # Part of the batch may have landed: memory no longer says what
            # the log says. Rebuild from the log before the next input.
            self._stale = True
            if isinstance(exc, EventsError):
                raise HostUnavailableError(
                    f"saga events not acknowledged: {exc}"
                ) from exc
            raise
        self._check_landed(work, acks, ends)
        # Durable, and after this host's own records: the new states become
        # current.
        for (number, record, _), ack in zip(work.records, acks, strict=True):
            part = self._parts[number]
            part.end = max(part.end, ack.offset + 1)
            part.since += len(record.events)
        for number, saga_id in work.late:
            self._parts[number].reported_late(saga_id)
        for number, state in work.staged.values():
            self._parts[number].keep(state)
            if not state.status.terminal:
                self._timers.arm(number, state)
        self._metrics.count_batch(work)
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

    def _check_landed(self, work: Batch, acks: list[Ack], ends: dict[int, int]) -> None:
        """Each record landed right after the one before it on its partition,
        or with only a replaced owner's records between: else another writer
        appended there (a newer owner, most likely), and nothing of the batch
        may be made current or sent until the log says whose it is."""
        ours: dict[int, set[int]] = {}
        gaps: dict[int, int] = {}
        for (number, _, _), ack in zip(work.records, acks, strict=True):
            self._watch.check_ack(number, self._parts[number], ack)
            ours.setdefault(number, set()).add(ack.offset)
            if ack.offset != ends[number]:
                gaps.setdefault(number, self._parts[number].end)
            ends[number] = ack.offset + 1
        apart = {
            number: why
            for number, start in gaps.items()
            if (
                why := foreign_writes(
                    self._kafka, number, start, ours[number], self._parts[number].epoch
                )
            )
        }
        if apart:
            self._stale = True
            raise HostUnavailableError(
                f"on {SAGA_EVENTS}, {'; '.join(apart.values())}: rebuilding from "
                "the log before the next input"
            )

    def _send(self, number: int, send: Send) -> None:
        """Publish a command whose saga events are durable. A send that fails is
        not retried here: the saga's deadline re-sends it as the next attempt."""
        try:
            self._publisher.publish(send.topic, send.message, partition=number)
        except Exception:
            log.exception("sending %s failed", send.message.message_id)

    def _snapshot(self, number: int) -> None:
        # A snapshot vouches that its sagas' commands went out (see rearm).
        self._send_again(None)
        part = self._parts[number]
        part.manifest = self._snapshots.write(
            number,
            part.end,
            list(part.sagas.values()),
            list(part.finished_order),
            dict(part.doubtful),
            part.manifest,
            part.epoch,
        )
        part.since = 0
        self._counters["snapshots"] += 1

    # -- timers ---------------------------------------------------------------

    def _run_timers(self) -> None:
        interval = self._settings.tick_ms / 1000
        while not self._stopping.wait(interval):
            try:
                self._check_fence()
                self.fire_timers()
            except LogLostError:
                pass  # stopped, and said so once
            except Exception:
                # The due timers were put back (or the host reloads from the
                # log first); the next tick tries again.
                log.exception("firing saga timers failed")

    def fire_timers(self) -> int:
        """Act on every deadline that has passed; returns how many sagas acted.
        Also sends a share of the commands queued for re-sending by a restore."""
        with self._lock, self._watch.guard():
            self._send_again(_RESEND_PER_TICK)
            if self._stale:
                self._reload()
            now = self._now()
            due = self._timers.due(now)
            work = Batch()
            fired = 0
            for timer in due:
                part = self._parts.get(timer.partition)
                if part is None:
                    continue  # released, or taken by a newer owner
                state = part.sagas.get(timer.saga_id)
                if state is None or state.deadline != timer.deadline:
                    continue  # ended, or re-armed since: a stale entry
                tick = Tick(
                    saga_id=state.saga_id, now=now, jitter=self._random.random()
                )
                try:
                    decision = decide(self._definitions[state.saga_type], state, tick)
                    refused = self._write_ahead.stage(
                        work,
                        (timer.partition, part.end),
                        state,
                        decision,
                        now,
                        "timer",
                        part.epoch,
                    )
                except Exception as exc:
                    # One saga's bug must not cost the others their timers. This
                    # one stays as it is, and a person is told through the DLQ.
                    log.exception(
                        "deciding the deadline of saga %s failed", state.saga_id
                    )
                    refused = f"internal error: {exc!r}"
                if refused:
                    where = (timer.partition, part.end)
                    self._write_ahead.dead_timer(work, where, state, now, refused)
                    continue
                fired += 1
            try:
                self._commit(work)
            except Exception:
                self._timers.put_back(due)
                raise
            self._counters["timers"] += fired
            return fired

    def _send_again(self, limit: int | None) -> None:
        """Re-send up to ``limit`` queued commands (all for ``None``), skipping
        sagas that have moved on since: their newer command went out already."""
        now = self._now()
        sent = 0
        while self._resend and (limit is None or sent < limit):
            number, saga_id, seq = self._resend.pop()
            part = self._parts.get(number)
            state = None if part is None else part.sagas.get(saga_id)
            if state is None or state.seq != seq:
                continue
            send = pending_command(self._definitions[state.saga_type], state, now)
            if send is not None:
                self._send(number, send)
                sent += 1
        if sent:
            self._publisher.flush()
        self._counters["resent"] += sent

    # -- rebuilding from the log ----------------------------------------------

    def _reload(self) -> None:
        """Forget memory and rebuild it from the log: after an append of unknown
        outcome, the log is the truth and memory may disagree with it (the
        publisher has replaced its producer already: see
        :meth:`KafkaMessagePublisher.send_all`). A partition the log shows
        claimed since at a higher epoch is this host's no more."""
        kept = self._parts
        log.warning("rebuilding partitions %s from the log", sorted(kept))
        with TopicAdmin(self._kafka) as admin:
            self._watch.check_identity(admin)
        retention = self._settings.finished_retention
        self._parts = {number: PartitionBooks(retention) for number in kept}
        self._timers.clear()
        self._resend.clear()
        try:
            self._restored, fence = restore.restore(
                self._kafka,
                self._snapshots,
                self._parts,
                self._timers,
                self._resend,
                self._now() + self._settings.restore_grace_ms,
            )
            self._watch.check_reloaded(self._watch.ends(kept), self._parts)
        except BaseException:
            # What the host knew: the next reload compares against it, and a
            # person sees it if the log was lost.
            self._parts = kept
            raise
        for number, part in kept.items():
            self._parts[number].epoch = part.epoch
            claim = fence.claim(number)
            if fence.epoch(number) > part.epoch and claim is not None:
                self._fenced[number] = Taken(
                    number, claim.epoch, False, claim.owner, claim.engine
                )
                del self._parts[number]
                log.warning(
                    "partition %d was claimed by %s at epoch %d (this host had "
                    "epoch %d): dropped",
                    number,
                    claim.owner,
                    claim.epoch,
                    part.epoch,
                )
        self._stale = False

    def _check_fence(self) -> None:
        """When due, each owned partition still ends where this host's last
        record did: a longer log means another writer (see the module)."""
        with self._lock:
            owned = dict(self._parts)
        ends = self._fence_check.ends_if_due(owned)
        with self._lock:
            if any(
                ends.get(number, 0) > part.end
                for number, part in self._parts.items()
                if owned.get(number) is part
            ):
                self._stale = True


def _reply_to_ended(
    work: Batch, number: int, part: PartitionBooks, reply: Reply
) -> str:
    """A reply for a saga not in flight: why it is dead-lettered, or "" for
    a duplicate. A late success of the step an ended saga gave up on in
    doubt is reported (once); a saga never seen is unknown."""
    saga_id = reply.saga_id
    late = part.doubtful.get(saga_id)
    if (
        reply.success
        and late is not None
        and reply.step_id == late
        and (number, saga_id) not in work.late
    ):
        work.late.add((number, saga_id))
        work.report["late_replies"] += 1
        return late_reason(saga_id, late, "ended")
    if saga_id in part.finished:
        work.report["duplicates"] += 1
        return ""
    return unknown_saga(saga_id, part.retention)
