"""A host's watch on its log: a log that lost what the host read stops the host.

The host's books are a fold of ``saga.events``. If the log now ends below an
offset the host read or had acknowledged, or it is not the topic (or the
cluster) the engine started on, carrying on would fold a partial history: sagas
would vanish mid-step with their payments taken. So the host stops taking input
(:class:`LogLostError` to every caller, once logged) and says why in its stats
and metrics; Ray restarting it would not help, and is not asked to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from actors.engine.books import PartitionBooks
from actors.engine.workers import Fatal
from actors.errors import HostUnavailableError
from events.errors import EventsError, LogLostError
from events.transport.admin import TopicAdmin
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, LogIdentity
from events.wire.topics import SAGA_EVENTS

log = logging.getLogger(__name__)


class LogWatch:
    """Checks a host's log against what the host knows of it; keeps the verdict."""

    def __init__(
        self,
        identity: LogIdentity | None,
        grace_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identity = identity
        self._grace_s = grace_ms / 1000
        self._clock = clock
        #: Since when a reload has found the log shorter than what was read.
        self._short_since: float | None = None
        self._fatal = Fatal()

    @property
    def lost(self) -> str:
        """What was lost ("" while the log is whole)."""
        return self._fatal.reason

    def check_identity(self, admin: TopicAdmin) -> None:
        """The cluster and topics are the ones the engine started on."""
        if self._identity is not None:
            admin.check_identity(self._identity)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Refuse at once once stopped; a loss found inside stops the host."""
        if self.lost:
            raise LogLostError(self.lost)
        try:
            yield
        except LogLostError as exc:
            self.stop(exc)
            raise

    def stop(self, exc: LogLostError) -> None:
        self._fatal.record("saga host", exc)

    @staticmethod
    def ends(parts: Mapping[int, PartitionBooks]) -> dict[int, int]:
        return {number: part.end for number, part in parts.items()}

    def check_reloaded(
        self, before: Mapping[int, int], parts: Mapping[int, PartitionBooks]
    ) -> None:
        """After a reload, each partition's log reaches at least as far as the
        host had read it before.

        A shorter log is a suspicion first (a new leader's high watermark can
        trail the old one's for a moment): :class:`HostUnavailableError`, so
        the caller tries again later, until it has lasted the grace period."""
        shrunk = [
            f"{SAGA_EVENTS} partition {number} ends at {parts[number].end}, below "
            f"offset {end} this host had read"
            for number, end in sorted(before.items())
            if parts[number].end < end
        ]
        if not shrunk:
            self._short_since = None
            return
        now = self._clock()
        if self._short_since is None:
            self._short_since = now
        if now - self._short_since >= self._grace_s:
            raise LogLostError("; ".join(shrunk))
        raise HostUnavailableError(
            f"{'; '.join(shrunk)}: waiting up to {self._grace_s:g} s for the log "
            "to catch up (a new leader's) before calling it lost"
        )

    @staticmethod
    def check_ack(number: int, part: PartitionBooks, ack: Ack) -> None:
        """An append lands after everything the host read of the partition.

        An offset of -1 is no answer about where: the broker's reply to a
        batch it already had (the idempotent producer's retry of a send whose
        acknowledgement was lost) carries none."""
        if 0 <= ack.offset < part.end:
            raise LogLostError(
                f"{SAGA_EVENTS} partition {number} took an append at offset "
                f"{ack.offset}, below offset {part.end} this host had read"
            )


class FenceCheck:
    """Reads the ends of a host's partitions of ``saga.events`` at most every
    ``interval_ms``: an owner is the only writer there, so a partition that
    ends past the host's last record was written by another (a newer owner).
    Its reader connects when first needed and again after a failure."""

    def __init__(
        self,
        kafka: KafkaSettings,
        interval_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._interval_s = interval_ms / 1000
        self._clock = clock
        self._next = 0.0
        self._reader: PartitionReader | None = None

    def ends_if_due(self, parts: Mapping[int, PartitionBooks]) -> dict[int, int]:
        """Each partition's end, if a check is due (else nothing)."""
        now = self._clock()
        if not parts or now < self._next:
            return {}
        self._next = now + self._interval_s
        try:
            if self._reader is None:
                self._reader = PartitionReader(self._kafka)
            ends = self._reader.ends(TP(SAGA_EVENTS, number) for number in parts)
        except EventsError as exc:
            # The next check tries again; an append would find a writer too.
            log.warning(
                "checking the ends of partitions %s failed: %s", list(parts), exc
            )
            self.close()
            return {}
        return {tp.partition: end for tp, end in ends.items()}

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
