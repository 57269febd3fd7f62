"""What a backtest reports: each policy's outcomes summed up, and the sagas
whose outcome the candidate policy changes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from actors.analysis.simulate import Outcome

#: The statuses in the order a report lists them.
STATUSES = ("completed", "compensated", "rejected", "failed", "compensating", "running")


class Summary(NamedTuple):
    sagas: int
    outcomes: dict[str, int]
    #: Compensated sagas over all of them.
    compensation_rate: float
    p50_ms: float | None
    p99_ms: float | None
    dead_letters: int
    retries: int
    timeouts: int
    #: Sagas not ended by the horizon.
    unfinished: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sagas": self.sagas,
            "outcomes": self.outcomes,
            "compensation_rate": round(self.compensation_rate, 6),
            "duration_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
            "dead_letters": self.dead_letters,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "unfinished": self.unfinished,
        }


def summary(outcomes: Sequence[Outcome]) -> Summary:
    counts = Counter(o.status for o in outcomes)
    durations = sorted(d for o in outcomes if (d := o.duration_ms) is not None)
    return Summary(
        sagas=len(outcomes),
        outcomes={s: counts[s] for s in STATUSES if counts[s]},
        compensation_rate=counts["compensated"] / len(outcomes) if outcomes else 0.0,
        p50_ms=quantile(durations, 0.5),
        p99_ms=quantile(durations, 0.99),
        dead_letters=sum(o.dead_letters for o in outcomes),
        retries=sum(o.retries for o in outcomes),
        timeouts=sum(o.timeouts for o in outcomes),
        unfinished=sum(1 for o in outcomes if o.ended_at is None),
    )


def quantile(ordered: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated between the two
    nearest (as DuckDB's ``quantile_cont``); ``None`` for no values."""
    if not ordered:
        return None
    place = q * (len(ordered) - 1)
    low, high = math.floor(place), math.ceil(place)
    share = place - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * share)


class Change(NamedTuple):
    """A saga whose outcome differs between the two policies."""

    saga_id: str
    baseline: str
    candidate: str
    baseline_reason: str
    candidate_reason: str
    baseline_ms: int | None
    candidate_ms: int | None


def changes(baseline: Sequence[Outcome], candidate: Sequence[Outcome]) -> list[Change]:
    """The sagas whose status differs, in the order given (by start)."""
    return [
        Change(
            b.saga_id,
            b.status,
            c.status,
            b.reason,
            c.reason,
            b.duration_ms,
            c.duration_ms,
        )
        for b, c in zip(baseline, candidate, strict=True)
        if b.status != c.status
    ]


class Mismatch(NamedTuple):
    """A saga the recorded policy did not replay as recorded."""

    saga_id: str
    recorded: str
    replayed: str
    recorded_end: int | None
    replayed_end: int | None


class Comparison(NamedTuple):
    sagas: int
    start: int | None
    end: int | None
    seed: int
    policy: dict[str, Any]
    baseline: Summary
    candidate: Summary
    changed: list[Change]
    #: The baseline against the recording: what it could not reproduce.
    mismatches: list[Mismatch]
    #: Each saga's outcome under the recorded policy and the candidate, in
    #: the order they started.
    pairs: list[tuple[Outcome, Outcome]]

    def to_json(self, most: int | None = None) -> dict[str, Any]:
        return {
            "window": {
                "from": iso(self.start),
                "to": iso(self.end),
                "sagas": self.sagas,
            },
            "seed": self.seed,
            "policy": self.policy,
            "reproduced": {
                "sagas": self.sagas,
                "matched": self.sagas - len(self.mismatches),
                "mismatches": [m._asdict() for m in self.mismatches[:most]],
            },
            "baseline": self.baseline.to_json(),
            "candidate": self.candidate.to_json(),
            "changed_count": len(self.changed),
            "changed": [c._asdict() for c in self.changed[:most]],
        }


def iso(ms: int | None) -> str | None:
    """An epoch-ms time as ISO 8601 (UTC)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()
