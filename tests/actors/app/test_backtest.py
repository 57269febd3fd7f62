"""`saga backtest` on a real run with an injected fault: the account service
frozen past the deposit's retries. The recorded policy replays every
outcome; a longer deposit timeout ends the timeouts exactly for the sagas
whose recorded answer came within it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.analysis.backtest import backtest, recordings
from actors.analysis.policy import Policy
from actors.core import DEFINITIONS, StepTimedOut
from projections.history import history
from projections.reader import open_projections
from tests.conftest import FinishedRun

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]
POLICY = "[deposit.steps.deposit]\ntimeout_ms = 20_000\n"

pytestmark = pytest.mark.broker


def saga(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAGA, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "XDG_DATA_HOME": str(home)},
    )


def test_the_recorded_policy_replays_the_run_and_a_policy_changes_it(
    frozen_run: FinishedRun, tmp_path: Path
) -> None:
    same = saga(frozen_run.home, "backtest", "--json")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["window"]["sagas"] == 600
    assert report["reproduced"]["matched"] == 600, report["reproduced"]
    assert report["changed_count"] == 0
    assert report["baseline"] == report["candidate"]

    policy = tmp_path / "deposit.toml"
    policy.write_text(POLICY)
    chart = tmp_path / "backtest.png"
    tried = saga(frozen_run.home, "backtest", "--policy", str(policy), "--seed", "3",
                 "--json", "--chart", str(chart))  # fmt: skip
    assert tried.returncode == 0, tried.stderr
    report = json.loads(tried.stdout)
    assert report["reproduced"]["matched"] == 600
    assert report["policy"] == {
        "deposit": {"steps": {"deposit": {"timeout_ms": 20000}}}
    }
    # The deposit is the pivot: completed either way, with fewer timeouts.
    assert report["changed_count"] == 0
    assert report["candidate"]["outcomes"] == report["baseline"]["outcomes"]
    assert 0 < report["candidate"]["timeouts"] < report["baseline"]["timeouts"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = saga(frozen_run.home, "backtest", "--policy", str(policy))
    assert text.returncode == 0, text.stderr
    assert "the recorded policy reproduces 600 of 600 recorded outcomes" in text.stdout
    assert "no saga's outcome changes" in text.stdout


@pytest.mark.parametrize("timeout_s", [20, 45])
def test_a_longer_deposit_timeout_ends_timeouts_where_the_answer_came_in_time(
    frozen_run: FinishedRun, timeout_s: int
) -> None:
    """Each deposit the freeze caught was answered when the service thawed,
    up to 38.7 s after its command: a timeout longer than that wait ends its
    timeouts; a shorter one leaves it timing out."""
    db = open_projections(frozen_run.directory / "projections")
    recorded = history(db)
    found = recordings(recorded.logs, recorded.letters, DEFINITIONS)
    policy = f"[deposit.steps.deposit]\ntimeout_ms = {timeout_s * 1000}\n"
    result = backtest(
        found, DEFINITIONS, Policy.parse(policy.encode(), "p.toml"), seed=3
    )
    assert result.mismatches == []
    caught_within = caught_beyond = 0
    for recording, (baseline, candidate) in zip(found, result.pairs, strict=True):
        answers = recording.answers.get("deposit")
        if not answers:
            continue  # rejected or compensated before the deposit
        waited = answers[0].after_ms  # the deposit's answer, after its command
        deposit_timeouts = sum(
            isinstance(event, StepTimedOut) and event.step == "deposit"
            for record in recorded.logs[recording.saga_id]
            for event in record.events
        )
        others = baseline.timeouts - deposit_timeouts  # of the steps before
        assert baseline.status == candidate.status  # the pivot: completed
        assert candidate.ended_at == baseline.ended_at  # when the answer came
        if waited < timeout_s * 1000 - 100:
            caught_within += deposit_timeouts > 0
            assert candidate.timeouts == others, recording.saga_id
        elif waited > timeout_s * 1000 + 1_000:
            caught_beyond += 1
            assert others < candidate.timeouts < baseline.timeouts, recording.saga_id
    # The freeze caught deposits, each on the side of the timeout its wait says.
    if timeout_s == 45:
        assert caught_within > 10 and caught_beyond == 0
    else:
        assert caught_beyond > 10


def test_a_policy_or_window_the_backtest_cannot_use_is_refused_with_why(
    frozen_run: FinishedRun, tmp_path: Path
) -> None:
    missing = saga(frozen_run.home, "backtest", "--policy", str(tmp_path / "no.toml"))
    assert missing.returncode == 2
    assert "--policy" in missing.stderr and "No such file" in missing.stderr
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[deposit.steps.deposit]\ntimeout = 5\n")
    refused = saga(frozen_run.home, "backtest", "--policy", str(wrong))
    assert refused.returncode == 2
    assert "unknown field `timeout`" in refused.stderr
    empty = saga(frozen_run.home, "backtest", "--from", "2000-01-01", "--to",
                 "2000-01-02")  # fmt: skip
    assert empty.returncode == 1
    assert "no saga started in the window (600 recorded in all)" in empty.stderr
