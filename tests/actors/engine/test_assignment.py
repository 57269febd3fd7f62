"""The controller's plan: sticky, balanced, and moving little per round."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from actors.engine.assignment import Move, plan


def apply(owners: dict[int, str], moves: list[Move]) -> dict[int, str]:
    return {**owners, **{m.partition: m.target for m in moves}}


def test_a_fresh_engine_spreads_every_partition_evenly() -> None:
    owners = apply({}, plan(8, {}, ["a", "b", "c"]))
    assert sorted(owners) == list(range(8))
    assert sorted(Counter(owners.values()).values()) == [2, 3, 3]


def test_a_restarted_host_gets_its_partitions_back() -> None:
    owners = {p: "ab"[p % 2] for p in range(8)}
    orphaned = {p: h for p, h in owners.items() if h == "a"}
    moves = plan(8, {p: "b" for p in range(1, 8, 2)}, ["a", "b"], last=orphaned)
    assert moves == [Move(p, None, "a") for p in range(0, 8, 2)]


def test_a_dead_hosts_partitions_go_to_the_least_loaded() -> None:
    owners = {0: "b", 1: "c", 2: "c"}  # "a" held 3..5 and is gone
    moves = plan(6, owners, ["b", "c"], last={3: "a", 4: "a", 5: "a"})
    assert Counter(apply(owners, moves).values()) == {"b": 3, "c": 3}
    assert all(m.source is None for m in moves)


def test_a_new_host_takes_partitions_a_few_per_round() -> None:
    owners = {p: "ab"[p % 2] for p in range(16)}
    rounds = 0
    while moves := plan(16, owners, ["a", "b", "c"], limit=2):
        assert len(moves) <= 2 and all(m.source in ("a", "b") for m in moves)
        owners = apply(owners, moves)
        rounds += 1
    assert sorted(Counter(owners.values()).values()) == [5, 5, 6]
    assert rounds == 3


def test_a_draining_host_is_emptied_and_given_nothing() -> None:
    owners = {p: "ab"[p % 2] for p in range(6)}
    while moves := plan(6, owners, ["a", "b"], draining={"a"}, limit=2):
        assert all(m.target == "b" for m in moves)
        owners = apply(owners, moves)
    assert set(owners.values()) == {"b"}


def test_a_partition_another_engine_claimed_is_left_to_it() -> None:
    moves = plan(4, {}, ["a"], foreign={1, 2})
    assert [m.partition for m in moves] == [0, 3]


@given(
    st.integers(1, 24),
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=5, unique=True),
    st.dictionaries(st.integers(0, 23), st.sampled_from("abcdefg")),
)
def test_rounds_always_end_balanced_with_every_partition_on_a_live_host(
    partitions: int, live: list[str], start: dict[int, str]
) -> None:
    owners = {p: h for p, h in start.items() if p < partitions and h in live}
    for _ in range(100):
        moves = plan(partitions, owners, live, limit=3)
        if not moves:
            break
        owners = apply(owners, moves)
    assert sorted(owners) == list(range(partitions))
    loads = Counter(owners.values())
    counts = [loads.get(h, 0) for h in live]
    assert max(counts) - min(counts) <= 1
