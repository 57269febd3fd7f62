"""A worker node killed while sagas are in flight (see ``node_death.py``): its
hosts' partitions are granted to live hosts, every saga ends as it should, no
effect is applied twice, and the time to resume is measured."""

from __future__ import annotations

import pytest

from tests.actors.runtime.scenarios import report_of

pytestmark = pytest.mark.broker


def test_a_worker_node_killed_mid_run_loses_no_saga() -> None:
    report = report_of("tests.actors.runtime.node_death")
    # The fault fired where it matters: the node that held hosts is dead, and
    # sagas were in flight on its partitions.
    assert report["placed_on_workers"], "saga actors landed on the head"
    assert report["node_dead"] and report["partitions_lost"]
    assert report["in_flight_at_death"] > 0
    # Every host answers again, none on the dead node: Ray restarted those
    # that were there on the surviving worker.
    assert report["victim_node"] not in report["hosts_after_on"]
    # Each partition the node held when it died is held now at a higher epoch:
    # a claim made after the death (the epochs come from the log's claims).
    after = {p: epoch for p, _, epoch in report["owners_after"]}
    assert all(after[p] > epoch for p, epoch in report["epochs_at_death"])
    # The routers too: each answers from a live node, the dead one's among
    # them restarted (not lost), and the group went on routing.
    assert report["victim_node"] in report["routers_before_on"]
    assert report["victim_node"] not in report["routers_after_on"]
    assert len(report["routers_after_on"]) == len(report["routers_before_on"])
