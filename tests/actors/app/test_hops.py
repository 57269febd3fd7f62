"""Where the time goes: the hop histograms, their file, and `saga status`'s
section over it (the actors filling them: tests/actors/app/test_metrics.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from actors.app.cli.status import hop_lines
from actors.app.hops import (
    HOPS_FILE,
    STALE_AFTER_S,
    HopSummary,
    HopWriter,
    hops_report,
    merged,
    write_hops,
)
from events.wire.latency import BUCKETS_S, HOPS, Histogram, HistogramCounts
from tests.projections.test_status import published, saga


def histogram(*seconds: float) -> HistogramCounts:
    h = Histogram()
    for s in seconds:
        h.observe(s)
    return h.counts()


def test_observations_land_in_their_buckets_and_quantiles_come_from_them() -> None:
    counts = histogram(0.001, 0.0011, 0.003, 0.003, 20.0, -0.5)
    assert counts.count == 6
    assert counts.buckets[BUCKETS_S.index(0.001)] == 1  # a bound is its bucket's
    assert counts.buckets[BUCKETS_S.index(0.002)] == 1
    assert counts.buckets[BUCKETS_S.index(0.005)] == 2
    assert counts.buckets[-1] == 1  # over the top bound
    assert counts.buckets[0] == 1  # a negative span counts as none
    assert counts.sum_s == pytest.approx(0.001 + 0.0011 + 0.006 + 20.0)
    # Linear within the bucket, as Prometheus estimates: the median (rank 3
    # of 6) ends (0.001, 0.002]; rank 4.5 is three quarters into (0.002,
    # 0.005], which holds the 4th and 5th.
    assert counts.quantile(0.5) == pytest.approx(0.002)
    assert counts.quantile(0.75) == pytest.approx(0.00425)
    assert counts.quantile(1.0) == BUCKETS_S[-1]  # the top bound, not 20 s
    assert counts.quantile(0.0) == 0.0
    assert histogram().quantile(0.99) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        counts.quantile(99)


def test_ages_run_from_kafka_timestamps_to_now_and_pass_over_unknown_ones() -> None:
    h = Histogram()
    now_ms = int(time.time() * 1000)
    h.ages([now_ms - 2_000, now_ms + 60_000, -1])  # 2 s ago, ahead, none
    counts = h.counts()
    assert counts.count == 2  # the unknown stamp passed over
    assert counts.buckets[0] == 1  # the one ahead counts as 0
    assert counts.sum_s >= 2.0  # the one 2 s old, however late it is read


def test_merging_adds_two_actors_counts() -> None:
    a, b = histogram(0.001, 0.1), histogram(0.1, 3.0)
    both = merged([{"log_append": a}, {"log_append": b, "ray_call": a}])
    assert both["log_append"] == histogram(0.001, 0.1, 0.1, 3.0)
    assert both["ray_call"] == a


def test_a_histogram_fed_from_threads_loses_no_observation() -> None:
    """A command's acknowledgement is observed on the producer's thread while
    the host observes its own hops: every one is counted."""
    h = Histogram()
    started = time.monotonic()

    def feed() -> None:
        for _ in range(5_000):
            h.since(started, "a future's value")
        h.observe_all([0.01] * 5_000)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert h.counts().count == 40_000


def test_the_report_shows_live_and_final_figures_and_one_line_otherwise(
    tmp_path: Path,
) -> None:
    hops = {
        "router_poll": histogram(0.03, 0.03, 0.09),
        "duckdb_commit": histogram(0.012),
        "ray_call": histogram(),  # timed nothing yet: no row
    }
    absent = hops_report(tmp_path)
    assert absent["state"] == "absent" and absent["hops"] == []
    assert hop_lines(absent) == [
        "Where the time goes: no figures: no platform has run on this data "
        "directory since hop latencies were recorded (saga serve and saga run "
        "write them)"
    ]

    write_hops(tmp_path, HopSummary(1_000.0, hops, os.getpid()))
    live = hops_report(tmp_path, now=1_001.5)
    assert live["state"] == "live" and live["written_age_s"] == 1.5
    # In the order of a step's path, named for people.
    assert [(r["hop"], r["name"], r["count"], r["per"]) for r in live["hops"]] == [
        ("router_poll", "router poll", 3, "record"),
        ("duckdb_commit", "DuckDB commit", 1, "batch"),
    ]
    poll = live["hops"][0]
    assert 20 < poll["p50_ms"] < 50 and 50 < poll["p99_ms"] <= 100
    lines = hop_lines(live)
    assert lines[0] == (
        "Where the time goes: live, written 1.5 s ago (since each actor started)"
    )
    assert lines[1].split() == [
        "router", "poll", "p50", f"{poll['p50_ms']:.1f}", "ms", "p99",
        f"{poll['p99_ms']:.1f}", "ms", "3", "records",
    ]  # fmt: skip
    assert lines[2].split()[-2:] == ["1", "batch"]

    stale = hops_report(tmp_path, now=1_000.0 + STALE_AFTER_S + 60)
    assert stale["state"] == "stale" and stale["hops"] == []
    assert hop_lines(stale) == [
        "Where the time goes: stale: last written 70.0 s ago, and not as the "
        "platform stopped (was its command killed?)"
    ]

    write_hops(tmp_path, HopSummary(1_000.0, hops, os.getpid(), final=True))
    final = hops_report(tmp_path, now=1_000.0 + 3_600)
    assert final["state"] == "final" and len(final["hops"]) == 2
    assert hop_lines(final)[0] == (
        "Where the time goes: final, as the platform stopped 60.0 min ago "
        "(since each actor started)"
    )

    (tmp_path / HOPS_FILE).write_text("{not json")
    broken = hops_report(tmp_path)
    assert broken["state"] == "absent"
    assert broken["text"].startswith(f"no figures: {tmp_path / HOPS_FILE} does not")


def test_the_writer_writes_while_running_and_once_more_as_final(
    tmp_path: Path,
) -> None:
    """What the actors answered, summed; when none answers, what they said
    last; on stopping, marked final."""
    answers = [[{"log_append": histogram(0.004)}, {"log_append": histogram(0.5)}]]
    asked = threading.Event()

    def gather() -> list[dict[str, HistogramCounts]]:
        asked.set()
        return answers[-1]

    writer = HopWriter(gather, tmp_path)
    writer.start()
    assert asked.wait(30)
    answers.append([])  # nobody answers any more
    writer.stop()
    report = hops_report(tmp_path)
    assert report["state"] == "final"
    [row] = report["hops"]
    assert row["hop"] == "log_append" and row["count"] == 2


def test_saga_status_has_the_section_in_text_and_json(tmp_path: Path) -> None:
    data = published(tmp_path)
    write_hops(
        data / "projections",
        HopSummary(time.time(), {"log_append": histogram(0.004, 0.006)}, 1),
    )
    result = saga("status", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    section = json.loads(result.stdout)["hops"]
    assert section["state"] == "live"
    assert [(r["hop"], r["count"]) for r in section["hops"]] == [("log_append", 2)]
    text = saga("status", "--data-dir", str(data)).stdout.splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("Where the"))
    assert text[start].startswith("Where the time goes: live, written")
    assert text[start + 1].split()[:2] == ["log", "append"]
    assert set(HOPS) >= {r["hop"] for r in section["hops"]}
