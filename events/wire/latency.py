"""Where a saga's time goes, live: per-hop latency histograms kept in-process.

Each actor times its own hops of a saga's path (:data:`HOPS`) into a
:class:`Histogram`: fixed buckets (:data:`BUCKETS_S`), so an observation is a
bucket index found by bisection, one count added and one sum grown, with
nothing kept per record. An actor reports a :class:`HistogramCounts` (a copy,
which crosses Ray and lands in files as it is); ``/metrics`` exposes them as
``saga_hop_seconds`` and ``saga status`` estimates their quantiles.

Here in the wire layer because every layer above measures into it: the
transport's publisher, the participant services' machinery, the engine.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

#: Each hop of a saga step's path, in the order a step goes through them, and
#: its name for people. Router: a record's Kafka timestamp to its poll
#: returning it, and the round trip of its Ray call to the host. Host: a
#: batch's decisions, its log records' append to their acknowledgement, each
#: command's send to its acknowledgement. Participant service: a command's
#: Kafka timestamp to its batch's start, the handler's batch (the demo
#: services' rules and DuckDB commit), the replies' send to their
#: acknowledgement.
HOPS: Final = {
    "router_poll": "router poll",
    "ray_call": "Ray call",
    "host_decide": "host decide",
    "log_append": "log append",
    "command_publish": "command publish",
    "participant_poll": "participant poll",
    "duckdb_commit": "DuckDB commit",
    "reply_publish": "reply publish",
}

#: What one observation of each hop is.
PER: Final = {
    "router_poll": "record",
    "ray_call": "call",
    "host_decide": "batch",
    "log_append": "batch",
    "command_publish": "command",
    "participant_poll": "command",
    "duckdb_commit": "batch",
    "reply_publish": "batch",
}

#: Upper bounds of the buckets, in seconds: 1-2-5 steps from 0.1 ms to 10 s
#: (one more bucket counts what is slower).
BUCKETS_S: Final = (
    0.0001,
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


class HistogramCounts(msgspec.Struct, frozen=True):
    """A histogram's counts at one moment: per bucket of :data:`BUCKETS_S`
    (not cumulative; the last one counts what is over the top bound), and the
    sum of what was observed."""

    buckets: list[int]
    sum_s: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def merged(self, other: HistogramCounts) -> HistogramCounts:
        """Both histograms' observations in one (another actor's, say)."""
        return HistogramCounts(
            [a + b for a, b in zip(self.buckets, other.buckets, strict=True)],
            self.sum_s + other.sum_s,
        )

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 to 1) in seconds, estimated as Prometheus'
        ``histogram_quantile`` does: linear within the bucket it falls in
        (the first bucket from 0); the top bound when it falls above it.
        ``None`` with nothing observed."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, not {q:g}")
        total = self.count
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.buckets[:-1]):
            if n and seen + n >= rank:
                low = BUCKETS_S[i - 1] if i else 0.0
                return low + (BUCKETS_S[i] - low) * (rank - seen) / n
            seen += n
        return BUCKETS_S[-1]


def empty_counts() -> HistogramCounts:
    return HistogramCounts([0] * (len(BUCKETS_S) + 1))


class Histogram:
    """A live histogram over :data:`BUCKETS_S`. Thread-safe: a publisher's
    acknowledgements are observed on its producer's I/O thread, and an actor
    is asked for :meth:`counts` on another."""

    __slots__ = ("_buckets", "_lock", "_sum")

    def __init__(self) -> None:
        self._buckets = [0] * (len(BUCKETS_S) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        # A negative span (clocks of two machines) counts as none.
        seconds = max(seconds, 0.0)
        i = bisect_left(BUCKETS_S, seconds)
        with self._lock:
            self._buckets[i] += 1
            self._sum += seconds

    def observe_all(self, seconds: Iterable[float]) -> None:
        """Many observations, taking the lock once (a batch's records)."""
        with self._lock:
            for s in seconds:
                s = max(s, 0.0)
                self._buckets[bisect_left(BUCKETS_S, s)] += 1
                self._sum += s

    def ages(self, stamps_ms: Iterable[int]) -> None:
        """Observe the wall-clock seconds from each epoch-ms stamp to now: a
        record's Kafka timestamp (CreateTime, the producer's clock when it
        was handed the record, so a producer on another machine adds its
        clock's offset; one ahead counts as 0). Stamps below 0 (none) are
        passed over."""
        now_ms = time.time() * 1000
        self.observe_all((now_ms - ms) / 1000 for ms in stamps_ms if ms >= 0)

    def since(self, started: float, *_: Any) -> None:
        """Observe the ``time.monotonic()`` seconds since ``started``; takes
        and ignores a future's value, so it can be a send's callback."""
        self.observe(time.monotonic() - started)

    def counts(self) -> HistogramCounts:
        with self._lock:
            return HistogramCounts(list(self._buckets), self._sum)


def snapshot(histograms: Mapping[str, Histogram]) -> dict[str, HistogramCounts]:
    """Each histogram's counts, by hop."""
    return {hop: h.counts() for hop, h in histograms.items()}
