"""What a host reports: per batch, per host, and its Prometheus counters."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from actors.core import CompensationCommanded, StepCommanded
from actors.engine.books import PartitionBooks
from actors.engine.restore import Restored
from actors.engine.write_ahead import Batch
from events.wire.latency import HistogramCounts
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS


class HandleReport(msgspec.Struct, frozen=True):
    """What a batch did: the router counts these."""

    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    #: Late successes of steps given up on in doubt (dead-lettered too).
    late_replies: int = 0
    #: Partitions the batch had records of that the host does not own (now):
    #: those records were left alone, for the router to send to their owner.
    not_owned: list[int] = []


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
    #: What the log lost, when it stopped the host ("" while it runs).
    log_lost: str = ""


def host_stats(
    parts: Mapping[int, PartitionBooks],
    counters: Mapping[str, int],
    restored: Restored,
    *,
    resend_pending: int,
    log_lost: str,
) -> HostStats:
    """A host's :class:`HostStats` from its books and counters."""
    return HostStats(
        partitions=sorted(parts),
        in_flight=sum(p.in_flight for p in parts.values()),
        finished=sum(len(p.finished) for p in parts.values()),
        applied=counters["applied"],
        duplicates=counters["duplicates"],
        dead_letters=counters["dead_letters"],
        timers_fired=counters["timers"],
        snapshots=counters["snapshots"],
        restored_sagas=restored.sagas,
        restored_records=restored.records,
        restore_s=restored.seconds,
        resent=counters["resent"],
        resend_pending=resend_pending,
        late_replies=counters["late_replies"],
        log_lost=log_lost,
    )


class HostMetrics(msgspec.Struct):
    """Counters since the host process started: the metrics endpoint labels
    them with the host and carries each series over the host's restarts (see
    :mod:`actors.app.monotonic`). (Sagas started and ended are counted from
    the projection instead, which no restart loses: see
    :mod:`projections.counts`.)"""

    produced: dict[str, int] = {}  # by topic
    retries: int = 0  # commands sent again as a new attempt
    dead_letters: int = 0
    duplicates: int = 0
    in_flight: int = 0
    #: Successes that arrived for a step the saga had given up on in doubt.
    late_replies: int = 0
    #: True once a log that lost records stopped the host.
    log_lost: bool = False
    #: The host's hops of a saga's path (:data:`events.wire.latency.HOPS`):
    #: a batch's decisions, its log append to the acknowledgement, each
    #: command's send to its acknowledgement.
    hops: dict[str, HistogramCounts] = {}

    def now(
        self,
        parts: Mapping[int, PartitionBooks],
        counters: Mapping[str, int],
        log_lost: str,
        hops: dict[str, HistogramCounts],
    ) -> HostMetrics:
        """A copy with the gauges, the host's counters and its hops' histograms
        as they are now."""
        return msgspec.structs.replace(
            self,
            hops=hops,
            in_flight=sum(p.in_flight for p in parts.values()),
            dead_letters=counters["dead_letters"],
            duplicates=counters["duplicates"],
            late_replies=counters["late_replies"],
            log_lost=bool(log_lost),
        )

    def count_batch(self, batch: Batch) -> None:
        """A batch made durable: its records, letters and commands to send
        (and among those, the commands re-sent as new attempts)."""
        self._produced(SAGA_EVENTS, len(batch.records))
        self._produced(SAGA_DLQ, len(batch.letters))
        for _, send in batch.sends:
            self._produced(send.topic, 1)
        for _, record, _ in batch.records:
            for event in record.events:
                match event:
                    case StepCommanded(attempt=a) | CompensationCommanded(attempt=a):
                        if a > 1:
                            self.retries += 1

    def _produced(self, topic: str, records: int) -> None:
        if records:
            self.produced[topic] = self.produced.get(topic, 0) + records
