"""What ``saga run`` reports: the summary at the end, and the progress bar while
it runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

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


def progress_bar(stream: Any = sys.stderr) -> Callable[[int, int, float], None]:
    last = [0.0]

    def show(done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / elapsed if elapsed > 0 else 0.0
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
            f"sagas ended  {rate:,.0f}/s  {elapsed:,.0f} s"
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
