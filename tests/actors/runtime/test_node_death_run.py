"""``saga run`` with the real services on a four-node Ray cluster, a worker
node killed mid-run (see ``node_death_run.py``): every saga ends, and the
run's audit, money conservation among it, is clean."""

from __future__ import annotations

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker


def test_a_worker_node_killed_mid_run_keeps_the_money_right() -> None:
    report = report_of("tests.actors.runtime.node_death_run")
    killed, summary = report["killed"], report["summary"]
    # The fault fired where it matters: Ray marked the node dead, with host 0
    # and its partitions on it, mid-run.
    assert killed["partitions_lost"]
    assert 0 < killed["sagas_ended_at_death"] < summary["sagas"]
    ended = sum(summary[k] for k in ("completed", "compensated", "rejected", "failed"))
    assert ended == summary["sagas"], report["said"]
    assert summary["failed"] == 0
    assert summary["audit"] and not any(summary["audit"].values()), summary["audit"]
