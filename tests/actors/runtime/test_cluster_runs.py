"""Partitions moving under ``saga run`` on a four-node Ray cluster, with the
real services and the run's money audit (see ``cluster_runs.py``): hosts
added and removed, a second engine on the same group, a host paused past the
controller's timeout. Each run: every saga ended, the audit clean (money
conservation among it), no saga driven by two hosts, and the move it struck
seen to happen."""

from __future__ import annotations

from typing import Any

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker


def clean(run: dict[str, Any], *, zombie: bool = False) -> None:
    summary = run["summary"]
    ended = sum(summary[k] for k in ("completed", "compensated", "rejected", "failed"))
    assert ended == summary["sagas"], run["said"]
    assert summary["audit"] and not any(summary["audit"].values()), summary["audit"]
    # No (sagaId, seq) with two different records: none driven by two hosts.
    # A zombie's appends after the claim that replaced it are in the log, so
    # there, none among the records a reader applies.
    assert run["driven_twice_applied" if zombie else "driven_twice"] == 0


def test_partitions_move_under_saga_run_on_a_multi_node_cluster() -> None:
    report = report_of("tests.actors.runtime.cluster_runs")
    workers = set(report["workers"])
    grown = report["added_and_removed"]
    clean(grown)
    # Four hosts over both workers (none on the head), then one holding all.
    assert grown["struck"]["hosts_grown"] == 4
    assert set(grown["struck"]["nodes_grown"]) == workers
    assert grown["struck"]["hosts_shrunk"] == 1
    assert max(grown["struck"]["epochs_shrunk"]) >= 2
    deploy = report["second_engine"]
    clean(deploy)
    # The older engine's hosts met the newer engine's claims and gave way.
    assert deploy["struck"]["fenced"]
    assert deploy["struck"]["fenced_by"] == [deploy["struck"]["newer"]]
    paused = report["paused_host"]
    clean(paused, zombie=True)
    # Its partitions were claimed while it slept, and whatever it wrote after
    # is in the log but applied by no reader.
    assert paused["struck"]["node"] in workers
    assert paused["struck"]["claimed_meanwhile"] == paused["struck"]["held"]
