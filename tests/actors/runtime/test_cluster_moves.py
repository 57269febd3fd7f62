"""Partitions moving between hosts on a three-node Ray cluster (see
``cluster_moves.py``): hosts added and removed mid-run, a second engine on the
same consumer group, a SIGSTOPped host that wakes after its partitions moved.
Each scenario asserts inside it that every saga ended as it should, no effect
was applied twice and no saga was driven by two hosts; here, that they ran on
the cluster's worker nodes and that the fences were met."""

from __future__ import annotations

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker


def test_partitions_move_safely_on_a_multi_node_cluster() -> None:
    report = report_of("tests.actors.runtime.cluster_moves")
    assert report["nodes"] == 3
    workers = set(report["workers"])
    grown = report["added_and_removed"]
    # Four hosts spread over both worker nodes, none on the head.
    assert set(grown["hosts_nodes"]) == workers
    assert grown["moved"] > 0
    assert report["second_engine"]["fenced_partitions"]
    paused = report["paused_host"]
    assert paused["paused_node"] in workers and paused["fenced_partitions"]
