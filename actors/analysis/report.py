"""What a backtest reports: each policy's outcomes summed up, and the sagas
whose outcome the candidate policy changes."""

from __future__ import annotations

import json
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


def text(result: Comparison, listed: int = 20) -> str:
    """The comparison as a table, the reproduction check and the changes."""
    window = result.to_json()["window"]
    lines = [
        f"backtest of {result.sagas:,} saga{'s' if result.sagas != 1 else ''} "
        f"started from {window['from']}"
        + (f" to {window['to']}" if window["to"] else "")
        + f" (seed {result.seed})",
        f"policy: {_policy_text(result.policy)}",
    ]
    matched = result.sagas - len(result.mismatches)
    lines.append(
        f"the recorded policy reproduces {matched:,} of {result.sagas:,} "
        "recorded outcomes"
        + ("" if not result.mismatches else " (not reproduced, first ones below)")
    )
    for miss in result.mismatches[:5]:
        lines.append(
            f"  {miss.saga_id}: recorded {miss.recorded}, replayed {miss.replayed}"
        )
    lines += ["", f"{'':<20}{'baseline':>14}{'candidate':>14}"]
    lines += _rows(result.baseline, result.candidate)
    lines.append("")
    changed = result.changed
    if not changed:
        lines.append("no saga's outcome changes")
        return "\n".join(lines)
    shown = f" (the first {listed})" if 0 < listed < len(changed) else ""
    lines.append(f"{len(changed):,} sagas' outcome changes{shown}:")
    for change in changed[:listed]:
        why = change.baseline_reason or change.candidate_reason
        lines.append(
            f"  {change.saga_id}  {change.baseline} -> {change.candidate}"
            + (f"  ({why[:70]})" if why else "")
        )
    return "\n".join(lines)


def _rows(baseline: Summary, candidate: Summary) -> list[str]:
    statuses = list(dict.fromkeys([*baseline.outcomes, *candidate.outcomes]))
    rows = [
        (status, baseline.outcomes.get(status, 0), candidate.outcomes.get(status, 0))
        for status in statuses
    ]
    lines = [f"{name:<20}{b:>14,}{c:>14,}" for name, b, c in rows]
    lines.append(
        f"{'compensation rate':<20}{baseline.compensation_rate:>14.2%}"
        f"{candidate.compensation_rate:>14.2%}"
    )
    for name, b_ms, c_ms in (
        ("p50 duration", baseline.p50_ms, candidate.p50_ms),
        ("p99 duration", baseline.p99_ms, candidate.p99_ms),
    ):
        lines.append(f"{name:<20}{_ms(b_ms):>14}{_ms(c_ms):>14}")
    for name, b, c in (
        ("dead letters", baseline.dead_letters, candidate.dead_letters),
        ("retries", baseline.retries, candidate.retries),
        ("timeouts", baseline.timeouts, candidate.timeouts),
        ("unfinished", baseline.unfinished, candidate.unfinished),
    ):
        lines.append(f"{name:<20}{b:>14,}{c:>14,}")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _policy_text(policy: dict[str, object]) -> str:
    if not policy:
        return "the recorded one (no --policy)"
    return json.dumps(policy, separators=(", ", ": "))
