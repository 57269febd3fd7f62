"""What the platform's actors ask Ray for, by what the cluster advertises."""

from __future__ import annotations

from actors.participants import PARTICIPANTS
from actors.runtime.placement import (
    SLOT_RESOURCE,
    STATE_RESOURCE,
    STATE_SHARE,
    slot_options,
    state_options,
)


def test_on_a_cluster_with_slots_hosts_and_routers_take_one_each_spread() -> None:
    options = slot_options({"CPU": 8.0, SLOT_RESOURCE: 16.0})
    assert options == {"resources": {SLOT_RESOURCE: 1}, "scheduling_strategy": "SPREAD"}


def test_the_stateful_actors_share_the_state_node() -> None:
    options = state_options({STATE_RESOURCE: 1.0})
    assert options == {"resources": {STATE_RESOURCE: STATE_SHARE}}
    # The services and the projection writer all fit on the one unit.
    assert (len(PARTICIPANTS) + 1) * STATE_SHARE <= 1


def test_a_cluster_that_advertises_neither_places_anywhere() -> None:
    """A local Ray: asking for a resource no node has would never schedule."""
    assert slot_options({"CPU": 2.0}) == {} == state_options({"CPU": 2.0})
