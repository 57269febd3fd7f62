"""``backtest``: a recorded window of sagas replayed through the recorded
policy and through a candidate, side by side.

The recorded policy (the definitions deployed) replays the window first: the
decider is deterministic, so it must reach every recorded outcome (what it
cannot reproduce is reported, never hidden). The candidate then replays the
same inputs, with the same seeded draws where the recording is silent, and
the two are compared saga by saga.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from actors.analysis.answers import Streams
from actors.analysis.policy import Policy
from actors.analysis.recording import Recording, recorded
from actors.analysis.report import Comparison, Mismatch, changes, summary
from actors.analysis.simulate import Clock, Outcome, simulate
from actors.core import LogRecord, SagaDefinition
from actors.errors import BacktestError
from events.wire.messages import EventMessage

#: How far past the recording's end a saga is followed by default: long
#: enough for any policy's retries to play out, short enough that a step
#: retried until answered by a participant that never answers stops.
GRACE_MS: Final = 10 * 60_000
#: How many sagas go by between two progress reports.
PROGRESS_EVERY: Final = 2_000


def recordings(
    logs: Mapping[str, Sequence[LogRecord]],
    late: Mapping[str, Iterable[tuple[int, EventMessage]]],
    definitions: Mapping[str, SagaDefinition],
) -> list[Recording]:
    """Every saga's recording, in the order they started."""
    unknown = sorted({r[0].saga_type for r in logs.values() if r} - set(definitions))
    if unknown:
        raise BacktestError(
            f"the log holds sagas of type(s) {', '.join(unknown)}, which the "
            f"definitions ({', '.join(sorted(definitions))}) lack: a backtest "
            "replays sagas under the definitions they ran on"
        )
    found = [
        recorded(records, late.get(saga_id, ()), definitions)
        for saga_id, records in logs.items()
        if records
    ]
    found.sort(key=lambda r: (r.started_at, r.saga_id))
    return found


def backtest(
    found: Sequence[Recording],
    definitions: Mapping[str, SagaDefinition],
    policy: Policy,
    *,
    seed: int,
    start: int | None = None,
    end: int | None = None,
    grace_ms: int = GRACE_MS,
    progress: Callable[[int, int], None] | None = None,
) -> Comparison:
    """Replay the sagas of ``found`` started in ``[start, end)`` (epoch ms;
    ``None``: unbounded) through ``definitions`` and through them changed by
    ``policy``; every recording informs the participants' answers.
    ``progress(done, total)`` is told every few thousand sagas."""
    window = [
        r
        for r in found
        if (start is None or r.started_at >= start)
        and (end is None or r.started_at < end)
    ]
    if not window:
        raise BacktestError(
            f"no saga started in the window ({len(found)} recorded in all): "
            "widen --from/--to"
        )
    candidate_definitions = policy.applied(definitions)
    streams = Streams(found)
    # The recording ends with its newest decision, whatever saga made it.
    last = max(r.last_at for r in found)
    lags = [lag for r in found for lag in r.timer_lags]
    clock = Clock(
        end=last,
        horizon=last + grace_ms,
        lag=round(statistics.median(lags)) if lags else 0,
    )
    baseline: list[Outcome] = []
    candidate: list[Outcome] = []
    for done, recording in enumerate(window, 1):
        baseline.append(simulate(definitions, recording, streams, clock, seed))
        candidate.append(
            simulate(candidate_definitions, recording, streams, clock, seed)
        )
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(window)):
            progress(done, len(window))
    return Comparison(
        sagas=len(window),
        start=start if start is not None else window[0].started_at,
        end=end,
        seed=seed,
        policy=policy.describe(),
        baseline=summary(baseline),
        candidate=summary(candidate),
        changed=changes(baseline, candidate),
        mismatches=_mismatches(window, baseline),
        pairs=list(zip(baseline, candidate, strict=True)),
    )


def _mismatches(
    window: Sequence[Recording], baseline: Sequence[Outcome]
) -> list[Mismatch]:
    """The sagas the recorded policy did not replay to their recorded status
    (and, for one that ended, end time)."""
    return [
        Mismatch(r.saga_id, r.status, o.at_end, r.ended_at, o.ended_at)
        for r, o in zip(window, baseline, strict=True)
        if o.at_end != r.status or (r.ended_at is not None and o.ended_at != r.ended_at)
    ]
