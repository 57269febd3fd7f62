"""`saga bench`: its schedule and figures (pure), and one small real run that
proves the command measures what it says. No figure is asserted against a
bound: speed lives in the benchmark, not in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from actors.app.bench.breakdown import HOPS, SagaTrace
from actors.app.bench.load import percentiles, ticks
from actors.app.cli.bench import table
from actors.core import DEPOSIT
from tests.actors.core.sagas import Run, reply_to

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]


def test_an_offered_rate_sends_each_saga_once_on_its_schedule() -> None:
    schedule = list(ticks(rate=500, seconds=2))
    sent = [i for _, due in schedule for i in due]
    assert sent == list(range(1_000))
    # Never ahead of the rate: by time t, at most rate * t + 1 sagas sent.
    total = 0
    for at, due in schedule:
        total += len(due)
        assert total <= 500 * at + 1
    assert schedule[-1][0] < 2.0


def test_percentiles_by_nearest_rank_and_none_for_nothing() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 51.0, "p95": 96.0, "p99": 100.0}


def test_a_sagas_hops_add_up_to_its_request_to_outcome_time() -> None:
    """A saga of one step, its timestamps made up: each hop is the gap its
    name says, and together they are the whole time."""
    run = Run("s-1", msgspec.structs.replace(DEPOSIT, steps=DEPOSIT.steps[:1]))
    run.start(now=1_010)  # the router took 10 ms to bring the request
    [command] = run.sent
    run.feed(reply_to(command, 1_060))
    started, ended = run.records()
    trace = SagaTrace()
    trace.request = 1_000
    trace.log = [(started, 1_012), (ended, 1_065)]  # decided 1_010 and 1_060
    trace.commands[command.message.message_id] = 1_015
    trace.replies[command.message.message_id] = (1_040.0, 1_050)
    assert trace.hops() == {
        "router + Ray call": 10 + 10,  # request, then the reply
        "decide + log send": 2 + 5,
        "log ack + command send": 3,
        "participant poll": 25,
        "participant apply + commit": 10,
    }
    assert sum(trace.hops().values()) == trace.total() == 65  # type: ignore[union-attr]


@pytest.mark.broker
def test_bench_measures_single_sagas_a_load_and_the_breakdown() -> None:
    result = subprocess.run(
        [*SAGA, "bench", "--single", "20", "--rates", "50", "--seconds", "2",
         "--saturation", "300", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    single = report["single"]
    assert single["sagas"] == 20 and single["unfinished"] == 0
    assert 0 < single["p50"] <= single["p95"] <= single["p99"]
    [load] = report["loads"]
    assert load["offered_per_s"] == 50 and load["sagas"] == 100
    assert load["unfinished"] == 0 and load["achieved_per_s"] > 0
    flat_out, top = report["saturation"], report["ceiling"]
    assert flat_out["sagas"] == 300 and flat_out["unfinished"] == 0
    assert top["sagas"] == 300 and top["sagas_per_s"] > 0
    assert top["ratio"] == round(flat_out["achieved_per_s"] / top["sagas_per_s"], 3)
    hops = report["breakdown"]
    assert hops["sagas"] == 20
    assert all(hops[h] >= 0 for h in HOPS) and hops["total"] > 0
    text = table(report)
    assert "one saga at a time" in text and "50 sagas/s offered" in text
    assert "bare ceiling" in text and "platform at saturation / ceiling" in text
    assert "participant apply + commit" in text
