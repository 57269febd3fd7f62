"""Point-in-time SQL (``saga_state_at``) agrees with the core's fold.

Every golden history and a few hundred seeded random ones (replies, refusals,
timeouts, retries, cancels, operator retries, holds and releases) are written
through the projection writer into a real DuckDB file; at every record the
SQL fold must equal the state the core's ``evolve`` reached there, and the
command ``pending_command`` would send.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.core import SagaState, pending_command
from projections.reader import open_projections
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter
from tests.actors.core.sagas import Run, random_history
from tests.actors.core.test_golden import SCENARIOS

SEED = 20261127


def histories() -> Iterator[Run]:
    for name, (script, _) in sorted(SCENARIOS.items()):
        run = Run(saga_id=f"g-{name}")
        script(run)
        yield run
    rng = random.Random(SEED)
    for i in range(300):
        yield random_history(rng, f"r-{i}")


def expected(run: Run, state: SagaState) -> dict[str, Any]:
    """A state row as the core has it."""
    send = pending_command(run.definition, state, 0)
    return {
        "status": str(state.status),
        "step": state.step,
        "attempt": state.attempt,
        "version": state.version,
        "pending_command": None if send is None else send.message.message_id,
        "deadline_ms": state.deadline or None,
        "retrying": state.retrying,
        "held": state.held or None,
        "reason": state.reason,
        "seq": state.seq,
    }


_COLUMNS = (
    "saga_id, status, step, attempt, version, pending_command, "
    "epoch_ms(deadline) AS deadline_ms, retrying, held, reason, seq"
)


def row(db: Any, query: str, *args: Any) -> dict[str, Any]:
    found = db.execute(f"SELECT {_COLUMNS} FROM {query}", list(args)).fetchall()
    assert len(found) == 1, (query, args, found)
    names = [c.strip().split(" AS ")[-1] for c in _COLUMNS.split(",")]
    return dict(zip(names[1:], found[0][1:], strict=True))


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Any, list[tuple[Run, list[int]]]]:
    """Every history on partition 0 of the log, one after the other; each run
    with the offsets of its records."""
    print(f"random histories seeded with {SEED}")
    tmp = tmp_path_factory.mktemp("pit")
    runs, batch = [], []
    for run in histories():
        offsets = list(range(len(batch), len(batch) + len(run.log)))
        batch.extend(
            Consumed("saga.events", 0, o, raw)
            for o, raw in zip(offsets, run.log, strict=True)
        )
        runs.append((run, offsets))
    db = open_store(tmp / "projections.duckdb")
    ProjectionWriter(db).apply(batch)
    return db, runs


def test_the_sql_fold_equals_the_cores_state_at_every_record(
    written: tuple[Any, list[tuple[Run, list[int]]]],
) -> None:
    db, runs = written
    kinds: set[str] = set()
    checked = 0
    for run, offsets in runs:
        for state, offset in zip(run.states, offsets, strict=True):
            got = row(
                db, "saga_state_at_offset(0, ?) WHERE saga_id = ?", offset, run.saga_id
            )
            assert got == expected(run, state), (run.saga_id, offset)
            kinds.add(got["status"])
            checked += 1
    # The histories reached every status, so every rule of the fold ran.
    assert kinds == {
        "running", "compensating", "completed", "compensated", "rejected", "failed"
    }  # fmt: skip
    assert checked > 1_500


def test_by_time_a_saga_is_the_fold_of_the_events_before_and_ends_terminal(
    written: tuple[Any, list[tuple[Run, list[int]]]],
) -> None:
    db, runs = written
    ended = 0
    for run, _ in runs[:150]:  # a query per point: the goldens and 142 random
        records = run.records()
        for i, record in enumerate(records):
            after = records[i + 1].at if i + 1 < len(records) else record.at + 60_000
            if after == record.at:
                continue  # two decisions in one millisecond: no time between them
            # At its decision's time, and any time before the next one.
            for ts in (record.at, (record.at + after) // 2):
                got = row(
                    db, "saga_state_at(?, to_timestamp(? / 1000))", run.saga_id, ts
                )
                assert got == expected(run, run.states[i]), (run.saga_id, ts)
        final = run.states[-1]
        if final.status.terminal:
            ended += 1
            got = row(
                db,
                "saga_state_at(?, to_timestamp(? / 1000))",
                run.saga_id,
                records[-1].at,
            )
            assert got["status"] == final.status and got["pending_command"] is None
        # Before its first event a saga has no state at all.
        early = db.execute(
            "SELECT count(*) FROM saga_state_at(?, to_timestamp(? / 1000))",
            [run.saga_id, records[0].at - 1],
        ).fetchone()
        assert early == (0,)
    assert ended > 30


def test_readers_of_the_published_files_get_the_macros_and_the_coordinates(
    written: tuple[Any, list[tuple[Run, list[int]]]], tmp_path: Path
) -> None:
    db, runs = written
    ProjectionWriter(db).publish(tmp_path / "projections")
    reader = open_projections(tmp_path / "projections")
    run, offsets = runs[0]
    everything = reader.execute(
        "SELECT count(*), count(*) FILTER (WHERE status IN ('running', "
        "'compensating')) FROM saga_state_at(now())"
    ).fetchone()
    assert everything is not None and everything[0] == len(runs)
    # The state joins with the log record it was read at.
    joined = reader.execute(
        "SELECT e.event_type FROM saga_state_at(now()) s JOIN saga_events e "
        'ON e.saga_id = s.saga_id AND e."partition" = s."partition" '
        'AND e."offset" = s."offset" AND e.seq = s.seq WHERE s.saga_id = ?',
        [run.saga_id],
    ).fetchall()
    assert joined and joined[-1][0].startswith("saga_")
    position = reader.execute(
        'SELECT "partition", next_offset FROM log_position_at(now())'
    ).fetchall()
    assert position == [(0, runs[-1][1][-1] + 1)]
    # A time before everything: no saga, no position.
    assert reader.execute(
        "SELECT count(*) FROM saga_state_at(TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    ).fetchone() == (0,)
    assert (
        msgspec.json.decode(
            reader.execute(
                "SELECT data FROM saga_events WHERE saga_id = ? AND seq = 1",
                [run.saga_id],
            ).fetchone()[0]  # type: ignore[index]
        )["type"]
        == "saga_started"
    )
    assert offsets[0] == 0
