"""Row 17 of the fault matrix, live: ``saga run`` while the wall clock of
every Ray process jumps an hour forward, then back to an hour behind, then to
the true time (see ``clock_jump_run.py``; the steps come from ``wallstep.c``,
preloaded). Every timer keeps to the clock port's monotonic time, and the
run's whole audit is clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.actors.runtime.scenarios import report_of
from tests.actors.runtime.wallstep import build

pytestmark = pytest.mark.broker


def test_a_wall_clock_jumping_an_hour_each_way_moves_no_timer(tmp_path: Path) -> None:
    library = build(tmp_path)
    report = report_of(
        "tests.actors.runtime.clock_jump_run", env={"WALLSTEP_LIBRARY": str(library)}
    )
    summary, log = report["summary"], report["log"]
    # The fault fired: the hosts stamped their records (Kafka's timestamps,
    # from their producers) on a wall clock an hour ahead, then an hour
    # behind, then true, and every stamp is one of those steps (a record
    # decided before a step may be sent after it), while their clock port
    # dated every decision within the run's true span.
    windows = log["windows"]
    assert [w["to_s"] for w in windows] == [0.0, 3600.0, -3600.0, 0.0]
    assert all(w["stamped"] > 0 for w in windows), windows
    assert log["unexplained_stamps"] == 0, windows
    assert log["decided_outside_run"] == 0
    # No timer acted early or late (one on the wall clock would have fired
    # for every saga waiting as it stepped ahead), and those of the freeze
    # acted while the clock was behind (one would have waited an hour).
    timers = log["timers"]
    assert timers["by_window"].get("2", 0) > 0, timers
    assert 0 <= timers["late_ms_min"] <= timers["late_ms_max"] < 10_000, timers
    # And the run's audit: every saga ended, money conserved, each effect
    # once, lag 0, projection = log; the freeze proved.
    ended = sum(summary[k] for k in ("completed", "compensated", "rejected", "failed"))
    assert ended == summary["sagas"], report["said"]
    assert summary["audit"] == dict.fromkeys(summary["audit"], 0), summary["audit"]
    assert all(p["fired"] for p in summary["chaos_proofs"]), summary["chaos_proofs"]
