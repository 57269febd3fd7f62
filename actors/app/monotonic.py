"""Counters that do not go backwards when the actor counting them restarts.

Each actor counts from 0 in its process (messages, retries, dead letters, the
hops' histograms); Ray restarts a dead actor in a new process, which counts
from 0 again. The metrics endpoint keeps, per series, the value it last
exposed: a series whose actor's count falls below that has restarted, and
what the earlier processes counted is carried on under it. So a scrape never
sees a counter fall. What a process counted after the last scrape before it
died is lost, as it would be to Prometheus' own reading of a reset.
"""

from __future__ import annotations

from prometheus_client.core import Metric

#: A sample, by name and labels.
_Key = tuple[str, tuple[tuple[str, str], ...]]


class Monotonic:
    """Carries each series over its actor's restarts (see the module)."""

    def __init__(self) -> None:
        self._seen: dict[_Key, float] = {}
        self._carried: dict[_Key, float] = {}

    def value(self, key: _Key, counted: float) -> float:
        """The series' value, given what its actor's process counts now."""
        if counted < self._seen.get(key, 0.0):
            self._carried[key] = self._carried.get(key, 0.0) + self._seen[key]
        self._seen[key] = counted
        return self._carried.get(key, 0.0) + counted

    def __call__(self, metric: Metric) -> Metric:
        """``metric`` (counters, or histograms: every sample of theirs only
        grows) with each sample carried over its actor's restarts."""
        metric.samples = [
            sample._replace(
                value=self.value(
                    (sample.name, tuple(sorted(sample.labels.items()))), sample.value
                )
            )
            for sample in metric.samples
        ]
        return metric
