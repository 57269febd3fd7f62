"""``PartitionOwner``: the partitions a saga host owns, taken, given up and fenced.

A host owns no partition until the controller grants it one
(:mod:`actors.engine.claims`): it appends a claim at the granted epoch,
restores up to it from the newest snapshot plus the log tail
(:mod:`actors.engine.restore`), re-arms every deadline
(:mod:`actors.engine.timers`) and re-sends every command still awaiting an
answer (same messageId, so participants see a duplicate). It gives a
partition up with a last snapshot, so the next owner's restore is short.

A host that was replaced (paused past its move, say) must write nothing a
reader applies and send nothing: each append must land right after the
host's last record on that partition (or with only replaced owners' records
between), and the host checks each partition's end when idle. Anything else
on its partition means another writer: the batch is not made current, no
command goes out, and the host rebuilds from the log, where a newer claim
takes the partition from it (:class:`~actors.core.Fence`).

:class:`~actors.engine.host.SagaHost` runs the sagas on what this owns.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence

from actors.core import SagaDefinition, Send, pending_command
from actors.engine import restore
from actors.engine.books import PartitionBooks
from actors.engine.claims import Incarnation, Ownership, Taken, foreign_writes, take
from actors.engine.settings import HostSettings
from actors.engine.snapshots import SnapshotStore
from actors.engine.timers import ResendQueue, Timers
from actors.engine.watch import FenceCheck, LogWatch
from actors.engine.write_ahead import Batch
from actors.errors import HostUnavailableError, RestoreError
from events.errors import EventsError, LogLostError
from events.transport.admin import TopicAdmin
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import Ack, LogIdentity
from events.wire.latency import Histogram
from events.wire.topics import ALL_TOPICS, SAGA_EVENTS

log = logging.getLogger(__name__)

#: What a host counts, for its stats and metrics.
COUNTERS = (
    "applied",
    "duplicates",
    "dead_letters",
    "late_replies",
    "timers",
    "snapshots",
    "resent",
)

#: The hops of a saga's path a host times (:data:`events.wire.latency.HOPS`).
HOST_HOPS = ("host_decide", "log_append", "command_publish")


class PartitionOwner:
    """The owned partitions' books, deadlines and queued re-sends, and how
    they are taken, given up, rebuilt and fenced. ``name`` and ``engine`` go
    into its claims (the Ray actor's name, and its engine's id); ``node`` is
    where it runs, for people."""

    def __init__(
        self,
        kafka: KafkaSettings,
        partition_count: int,
        settings: HostSettings,
        definitions: Mapping[str, SagaDefinition],
        clock: Callable[[], float],
        *,
        name: str,
        engine: str,
        node: str,
        identity: LogIdentity | None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._definitions = definitions
        self._count = partition_count
        self._clock = clock
        self._lock = threading.RLock()
        self._me = Incarnation(name, engine, node, uuid.uuid4().hex[:12], os.getpid())
        #: The partitions owned, and those lost to a newer claim since.
        self._parts: dict[int, PartitionBooks] = {}
        self._fenced: dict[int, Taken] = {}
        self._timers = Timers()
        self._resend = ResendQueue()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._hops = {hop: Histogram() for hop in HOST_HOPS}
        self._restored = restore.Restored(0, 0, 0.0)
        self._stale = False
        #: Why the last rebuild from the log failed, when waiting on the
        #: broker would not mend it ("" once one succeeds).
        self._failing = ""
        self._watch = LogWatch(identity, kafka.consumer.loss_grace_ms)
        # The producer connects on its first send; the topics are checked
        # patiently. A broker that is down is waited out: a Ray actor whose
        # constructor raises is dead for good.
        self._publisher = KafkaMessagePublisher(kafka, connect=False)
        self._snapshots = SnapshotStore(
            kafka, self._publisher, writer=self._me.incarnation
        )
        self._fence_check = FenceCheck(kafka, settings.fence_check_ms)

        def check_topics() -> None:
            with TopicAdmin(kafka) as admin:
                admin.check_topics(ALL_TOPICS, partition_count)
                self._watch.check_identity(admin)

        try:
            restore.patiently(check_topics, again=lambda: None)
        except LogLostError as exc:
            # Stay up to say so: a restart would meet the same loss.
            self._watch.stop(exc)

    def close(self) -> None:
        self._publisher.close()
        self._fence_check.close()

    # -- ownership, as the controller grants it ------------------------------

    def acquire(self, grants: Mapping[int, int]) -> list[Taken]:
        """Claim each partition of ``grants`` at its epoch, restored up to the
        claim (:func:`actors.engine.claims.take`); says what became of each."""
        with self._lock, self._watch.guard():
            if self._stale:
                self._reload()
            # A grant above the epoch held means the partition was claimed by
            # another meanwhile (this host slept through it, say): its books
            # are out of date, and it is claimed afresh, from the log.
            mine = {
                n: e
                for n, e in grants.items()
                if n not in self._parts or e > self._parts[n].epoch
            }
            for number in mine:
                self._parts.pop(number, None)
            held = [
                Taken(partition=n, epoch=self._parts[n].epoch, won=True)
                for n in grants
                if n not in mine
            ]
            try:
                takeover = take(
                    self._kafka,
                    self._snapshots,
                    self._publisher,
                    mine,
                    self._me,
                    self._settings.finished_retention,
                    self._now(),
                )
            except RestoreError:
                if len(mine) < 2:
                    raise
                # A partition no host can read must not keep the others from
                # their new owner: each alone; the unreadable stays unowned.
                log.exception("restoring %s failed: each alone", sorted(mine))
                return [*held, *self._each(mine)]
            for number, part in takeover.books.items():
                self._parts[number] = part
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
            return [*held, *takeover.taken]

    def _each(self, grants: Mapping[int, int]) -> list[Taken]:
        taken = []
        for number, epoch in grants.items():
            try:
                taken.extend(self.acquire({number: epoch}))
            except RestoreError:
                log.exception("partition %d cannot be restored", number)
        return taken

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
                failing=self._failing,
            )

    def snapshot(self) -> None:
        """Snapshot every owned partition now (also done every N events)."""
        with self._lock, self._watch.guard():
            for number in self._parts:
                self._snapshot(number)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _send(self, number: int, send: Send) -> None:
        """Publish a command whose saga events are durable. A send that fails is
        not retried here: the saga's deadline re-sends it as the next attempt."""
        try:
            self._publisher.publish(
                send.topic,
                send.message,
                partition=number,
                timed=self._hops["command_publish"],
            )
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
        except BaseException as exc:
            # What the host knew: the next reload compares against it, and a
            # person sees it if the log was lost.
            self._parts = kept
            if not isinstance(exc, (EventsError, HostUnavailableError)):
                # Not the broker: every later try would fail alike, and the
                # partitions would stall here while the host still answered.
                self._failing = f"rebuilding from the log failed: {exc!r}"
                log.error("%s: its partitions are to be granted elsewhere", exc)
            raise
        self._failing = ""
        for number, part in kept.items():
            self._parts[number].epoch = part.epoch
            claim = fence.claim(number)
            if fence.epoch(number) > part.epoch and claim is not None:
                self._fenced[number] = Taken(
                    number, claim.epoch, False, claim.owner, claim.engine, claim.at
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
        record did, or holds only a replaced owner's records after it (read
        past, as every reader skips them): anything else means another writer
        (see the module), and the host rebuilds from the log."""
        with self._lock:
            owned = {n: (part, part.end, part.epoch) for n, part in self._parts.items()}
        ends = self._fence_check.ends_if_due({n: p for n, (p, _, _) in owned.items()})
        verdicts = {
            number: foreign_writes(
                self._kafka, number, (end, ends[number] - 1), set(), epoch
            )
            for number, (_, end, epoch) in owned.items()
            if ends.get(number, 0) > end
        }
        with self._lock:
            for number, why in verdicts.items():
                part, end, _ = owned[number]
                if self._parts.get(number) is not part or part.end != end:
                    continue  # it moved on meanwhile: the next check looks again
                if why:
                    log.warning("%s: rebuilding from the log", why)
                    self._stale = True
                else:
                    part.end = ends[number]

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
                    self._kafka,
                    number,
                    (start, max(ours[number])),
                    ours[number],
                    self._parts[number].epoch,
                )
            )
        }
        if apart:
            self._stale = True
            raise HostUnavailableError(
                f"on {SAGA_EVENTS}, {'; '.join(apart.values())}: rebuilding from "
                "the log before the next input"
            )
