"""What ``saga run`` reports at the end: the summary."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class Summary(msgspec.Struct):
    sagas: int
    completed: int
    compensated: int
    rejected: int
    failed: int
    sagas_per_s: float
    p50_ms: float
    p99_ms: float
    dlq: int
    audit: dict[str, int]
    seed: int
    elapsed_s: float
    chaos: list[str]
    data_dir: str | None
    #: How far the projection's tables trailed the log while the run went on
    #: (sampled every quarter second), in seconds.
    projection_lag_s: dict[str, float] = {}
    #: Per fault of ``--chaos``: its kind, whether it was proved to fire, how.
    chaos_proofs: list[dict[str, object]] = []


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])
