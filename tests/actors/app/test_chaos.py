"""The chaos schedule: drawn from the seed alone, every kind once, faults long
enough to matter. Pure: the run that strikes it is tested in test_run."""

from __future__ import annotations

import pytest

from actors.app.chaos import (
    FAULTS,
    Fault,
    chosen_faults,
    schedule,
    step_budgets,
)
from actors.core import DEFINITIONS
from actors.errors import UsageError

BUDGETS = step_budgets(DEFINITIONS)


def draw(seed: int, kinds: list[str]) -> list[Fault]:
    return schedule(
        seed,
        kinds,
        hosts=2,
        routers=1,
        services=["account", "payment", "user"],
        session_timeout_s=10.0,
        step_budget_s=BUDGETS,
        host_timeout_s=10.0,
    )


def test_a_seed_replays_its_schedule_and_another_seed_differs() -> None:
    kinds = chosen_faults(None, embedded_broker=True)
    first = draw(7, kinds)
    assert first == draw(7, kinds)
    assert first != draw(8, kinds)
    assert sorted(f.kind for f in first) == sorted(FAULTS)
    assert [f.at for f in first] == sorted(f.at for f in first)
    assert all(0.05 <= f.at <= 0.6 for f in first)


@pytest.mark.parametrize("seed", range(20))
def test_stops_outlast_what_they_must_and_kills_hit_money(seed: int) -> None:
    faults = {f.kind: f for f in draw(seed, list(FAULTS))}
    assert faults["broker-pause"].seconds > 10.0  # past the session timeout
    freeze = faults["service-freeze"]
    assert freeze.seconds > BUDGETS[freeze.target]
    assert faults["participant-kill"].target in ("account", "payment")
    assert faults["participant-kill-early"].target in ("account", "payment")
    assert faults["host-kill"].target in ("host 0", "host 1")
    assert 1 <= faults["router-kill"].count <= 5
    assert faults["idempotency-cleanup"].target in ("account", "payment")
    pause = faults["host-pause"]
    assert pause.target in ("host 0", "host 1") and pause.seconds >= 18.0


def test_the_step_budget_counts_every_attempt_and_backoff() -> None:
    # Three attempts of 10 s, and two backoffs of at most 0.5 s and 1 s.
    assert set(BUDGETS) == {"user", "payment", "account"}
    assert all(31.0 <= b <= 31.6 for b in BUDGETS.values()), BUDGETS


def test_fault_lists_are_checked_before_anything_starts() -> None:
    assert chosen_faults("poison, host-kill,poison", True) == ["poison", "host-kill"]
    assert "broker-pause" not in chosen_faults(None, embedded_broker=False)
    with pytest.raises(UsageError, match="unknown fire; choose from host-kill"):
        chosen_faults("host-kill,fire", True)
    with pytest.raises(UsageError, match="needs the embedded broker"):
        chosen_faults("broker-pause", embedded_broker=False)
    with pytest.raises(UsageError, match="empty list"):
        chosen_faults(",", True)
