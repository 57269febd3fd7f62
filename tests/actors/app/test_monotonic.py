"""An actor's counters start again at 0 when Ray restarts it; the metrics
endpoint's series go on from where they were, and never go backwards."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from actors.app.monotonic import Monotonic


def dead_letters(**per_actor: int) -> CounterMetricFamily:
    family = CounterMetricFamily("saga_dead_letters", "d", labels=["actor"])
    for actor, n in per_actor.items():
        family.add_metric([actor], n)
    return family


def values(family: CounterMetricFamily) -> dict[str, float]:
    return {s.labels["actor"]: s.value for s in family.samples}


def test_a_restarted_actors_series_goes_on_from_where_it_was() -> None:
    carry = Monotonic()
    assert values(carry(dead_letters(host0=5, host1=2))) == {"host0": 5, "host1": 2}
    assert values(carry(dead_letters(host0=7, host1=2))) == {"host0": 7, "host1": 2}
    # host0 restarted (its process counts from 0), host1 did not answer.
    assert values(carry(dead_letters(host0=1))) == {"host0": 8}
    assert values(carry(dead_letters(host0=3, host1=4))) == {"host0": 10, "host1": 4}
    # Restarted twice: each earlier process's count is carried.
    assert values(carry(dead_letters(host0=0, host1=1))) == {"host0": 10, "host1": 5}


def test_a_histograms_buckets_count_and_sum_are_carried_too() -> None:
    carry = Monotonic()

    def hops(buckets: list[tuple[str, float]], total: float) -> HistogramMetricFamily:
        family = HistogramMetricFamily("saga_hop_seconds", "h", labels=["actor"])
        family.add_metric(["router-0"], buckets, sum_value=total)
        return family

    carry(hops([("0.01", 4), ("+Inf", 6)], 0.5))
    after = carry(hops([("0.01", 1), ("+Inf", 1)], 0.01))
    found = {(s.name, s.labels.get("le")): s.value for s in after.samples}
    assert found == {
        ("saga_hop_seconds_bucket", "0.01"): 5,
        ("saga_hop_seconds_bucket", "+Inf"): 7,
        ("saga_hop_seconds_count", None): 7,
        ("saga_hop_seconds_sum", None): 0.51,
    }
