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

Which partitions a host owns, and how it takes, gives up and is fenced off
them, is :mod:`actors.engine.owner`. Records for a partition the host does not
own are answered "not owned" (the router asks the controller where they go
now), never dead-lettered.

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
import time
from collections.abc import Callable, Mapping, Sequence

from actors.core import (
    DEFINITIONS,
    Hold,
    Reply,
    SagaDefinition,
    SagaState,
    Start,
    Tick,
    Verdict,
    decide,
    late_reason,
)
from actors.engine.books import PartitionBooks
from actors.engine.clock import SteadyClock
from actors.engine.inbound import (
    Inbound,
    Refused,
    home_of,
    misrouted,
    not_in_flight,
    read_message,
    to_input,
    unknown_saga,
)
from actors.engine.owner import PartitionOwner
from actors.engine.settings import HostSettings
from actors.engine.stats import HandleReport, HostMetrics, HostStats, host_stats
from actors.engine.write_ahead import Batch, WriteAhead
from actors.errors import HostUnavailableError
from events.errors import EventsError, LogLostError
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from events.transport.types import LogIdentity
from events.wire.latency import snapshot
from events.wire.messages import Message, MessageCodec
from events.wire.topics import SAGA_REQUESTS

log = logging.getLogger(__name__)

#: Re-sends per timer tick after a restore: bounded, so a big restore does not
#: hold the host's lock for long.
_RESEND_PER_TICK = 2_000


class SagaHost(PartitionOwner):
    """Hosts the sagas of the partitions (of ``partition_count``) it is granted
    (:class:`~actors.engine.owner.PartitionOwner`)."""

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
        super().__init__(
            kafka,
            partition_count,
            settings or HostSettings(),
            definitions,
            clock or SteadyClock(),
            name=name,
            engine=engine,
            node=node,
            identity=identity,
        )
        self._random = random.Random()
        self._codec = MessageCodec(kafka.max_message_bytes)
        self._metrics = HostMetrics()
        self._write_ahead = WriteAhead(self._publisher, kafka.max_message_bytes)
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
            started = time.monotonic()
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
            self._hops["host_decide"].since(started)
            self._commit(work)
            return HandleReport(**work.report, not_owned=sorted(work.not_owned))

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
            return self._metrics.now(
                self._parts, self._counters, self._watch.lost, snapshot(self._hops)
            )

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        super().close()

    # -- applying inputs ---------------------------------------------------

    def _apply(self, work: Batch, inbound: Inbound, now: int) -> None:
        dead = self._write_ahead.dead
        message = read_message(self._codec, inbound)
        if isinstance(message, Refused):
            known = message.message
            saga_id = inbound.key if known is None else known.saga_id
            self._refuse(work, inbound, message.reason, now, known, saga_id)
            return
        saga_id = message.saga_id
        number = home_partition(saga_id, self._count)
        part = self._parts.get(number)
        if part is None:
            reason = misrouted(saga_id, number, sorted(self._parts))
            dead(work, inbound, reason, now, message)
            return
        state = work.state_of(saga_id, part)
        item = to_input(
            inbound, message, self._definitions, now, self._random.random(), self._codec
        )
        if isinstance(item, Refused):
            self._refuse(work, inbound, item.reason, now, message, saga_id)
            return
        if state is not None:
            saga_type = state.saga_type
        elif isinstance(item, Reply):
            reason = _reply_to_ended(work, number, part, item)
            if reason:
                dead(work, inbound, reason, now, message)
            return
        elif not isinstance(item, Start):  # an operator's request, not in flight
            reason = not_in_flight(saga_id, saga_id in part.finished, part.retention)
            dead(work, inbound, reason, now, message)
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
            dead(work, inbound, decision.reason, now, message, state)
            return
        if decision.verdict is Verdict.UNEXPECTED:
            self._refuse(work, inbound, decision.reason, now, message, saga_id)
            return
        refused = self._write_ahead.stage(
            work, (number, part.end), state, decision, now, str(inbound), part.epoch
        )
        if refused:
            self._refuse(work, inbound, refused, now, message, saga_id)

    def _refuse(
        self,
        work: Batch,
        inbound: Inbound,
        reason: str,
        now: int,
        message: Message | None,
        saga_id: str | None,
    ) -> None:
        """Dead-letter ``inbound``; a reply (or a record keyed by a saga that
        does not decode) for a saga in flight here also holds that saga behind
        it (:mod:`actors.core.hold`), so its later replies wait in order. An
        operator's request refused holds nothing: the operator is told."""
        number = home_partition(saga_id, self._count) if saga_id else -1
        part = self._parts.get(number)
        state = None if part is None else work.state_of(saga_id or "", part)
        self._write_ahead.dead(work, inbound, reason, now, message, state)
        if part is None or state is None or inbound.topic == SAGA_REQUESTS:
            return
        held = Hold(saga_id=state.saga_id, origin=str(inbound), reason=reason, now=now)
        decision = decide(self._definitions[state.saga_type], state, held)
        self._write_ahead.stage(
            work, (number, part.end), state, decision, now, str(inbound), part.epoch
        )

    # -- making a batch durable, then current -------------------------------

    def _commit(self, work: Batch) -> None:
        if work.empty:
            self._counters["duplicates"] += work.report["duplicates"]
            return
        ends = {number: self._parts[number].end for number, _, _ in work.records}
        started = time.monotonic()
        try:
            acks = self._write_ahead.append(work)
            self._hops["log_append"].since(started)
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
