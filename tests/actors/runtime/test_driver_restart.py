"""``saga serve`` on a Ray cluster, its driver killed and started again, then
scaled from the command line (see ``driver_restart.py``)."""

from __future__ import annotations

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker


def test_a_named_engine_outlives_a_killed_saga_serve() -> None:
    report = report_of("tests.actors.runtime.driver_restart")
    # The driver really died and the actors did not: the same processes,
    # found again by the second saga serve; then scaled, then stopped.
    assert len(report["actors_before"]) >= 4  # controller, host(s), router, writer
    assert report["survived_the_driver"]
    assert report["second_driver_went_on_with_them"]
    assert report["hosts_after_scale"] == 3
    assert report["serve_exit"] == 0 and report["left_running"] == []
    # saga status --engine (--ray-address auto) asks the controller: every
    # partition owned by one of the three hosts, on a node, at a claimed epoch.
    live = report["live_owners"]
    assert sorted(o["partition"] for o in live) == list(range(len(live)))
    assert {o["state"] for o in live} == {"owned"}
    assert len({o["host"] for o in live}) == 3
    assert all(o["node"] and o["epoch"] >= 1 for o in live)
