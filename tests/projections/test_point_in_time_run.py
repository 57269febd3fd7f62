"""``saga_state_at`` on a real run's projections equals the core's replay of
the run's own log, at instants sampled across the run (a frozen account
service among them, so sagas are caught mid-retry)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from actors.core import DEFINITIONS, pending_command, replay_log
from projections.archive import saga_log
from projections.reader import open_projections
from tests.conftest import FinishedRun

SEED = 17
pytestmark = pytest.mark.broker


def test_the_state_at_sampled_instants_is_the_replay_of_the_log_before_them(
    frozen_run: FinishedRun,
) -> None:
    db = open_projections(frozen_run.directory / "projections")
    first, last = db.execute(
        "SELECT epoch_ms(min(occurred_at)), epoch_ms(max(occurred_at)) FROM saga_events"
    ).fetchone() or (0, 0)
    logs = {
        saga_id: saga_log(db, saga_id)
        for (saga_id,) in db.execute("SELECT saga_id FROM sagas").fetchall()
    }
    rng = random.Random(SEED)
    print(f"instants drawn with seed {SEED}")
    instants = sorted(rng.randrange(first, last + 1) for _ in range(12))
    states_seen: set[str] = set()
    for ts in [*instants, last]:
        rows = db.execute(
            "SELECT saga_id, status, step, attempt, pending_command, "
            "epoch_ms(deadline), retrying FROM saga_state_at(to_timestamp(? / 1000))",
            [ts],
        ).fetchall()
        got = {row[0]: row[1:] for row in rows}
        expected: dict[str, tuple[Any, ...]] = {}
        for saga_id, records in logs.items():
            state = replay_log(r for r in records if r.at <= ts)
            if state is None:
                continue
            send = pending_command(DEFINITIONS[state.saga_type], state, ts)
            expected[saga_id] = (
                str(state.status), state.step, state.attempt,
                None if send is None else send.message.message_id,
                state.deadline or None, state.retrying,
            )  # fmt: skip
            states_seen.add(f"{state.status}/{state.step}")
        assert got == expected, ts
    # The instants caught sagas on their way, not only at their ends.
    assert "running/deposit" in states_seen
    assert len(logs) == 600
