"""The /metrics endpoint, scraped by a real Prometheus server during a run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.app.metrics import SAMPLE_NAMES, ownership_metrics
from actors.engine.controller import PartitionOwner
from events.transport.broker import free_port
from events.wire.latency import HOPS

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.broker


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "this test needs Debian's prometheus server: apt-get install prometheus "
            "(.ci/run installs it)"
        )
    return found


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_prometheus_scrapes_the_saga_counters_during_a_run(tmp_path: Path) -> None:
    metrics_port, prometheus_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: saga\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prometheus = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The run lingers with its final counts until the test has seen them
    # scraped (then SIGTERM ends the wait): without it the last scrape before
    # the run ended could predate every completion (CI saw only 'rejected').
    run = subprocess.Popen(
        [sys.executable, "-m", "actors.app.cli", "run", "--sagas", "4000",
         "--seed", "2", "--json", "--metrics-port", str(metrics_port),
         "--metrics-linger", "600"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        started: list[dict[str, Any]] = []
        while not started:
            assert time.monotonic() < deadline, "Prometheus never saw the counters"
            with contextlib.suppress(OSError):  # Prometheus still starting
                started = query(prometheus_port, "saga_started_total > 0")
            time.sleep(0.5)
        assert started[0]["metric"]["saga_type"] == "deposit"
        said = []
        assert run.stderr is not None
        for line in run.stderr:  # the run's stall timeout bounds this
            said.append(line)
            if line.startswith("metrics: the run's final counts"):
                break
        else:
            raise AssertionError("the run ended without lingering:\n" + "".join(said))
        final_from = time.time()  # Prometheus stamps its scrapes in wall time
        deadline = time.monotonic() + 60
        while not query(prometheus_port, f'timestamp(up{{job="saga"}}) > {final_from}'):
            assert time.monotonic() < deadline, "no scrape of the final counts"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)  # ends the linger, as Ctrl-C does
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout)
        finished = query(prometheus_port, "max_over_time(saga_finished_total[5m])")
        outcomes = {r["metric"]["outcome"]: float(r["value"][1]) for r in finished}
        kinds = ("completed", "compensated", "rejected", "failed")
        ended = {o: summary[o] for o in kinds}
        assert outcomes == {o: n for o, n in ended.items() if n}, (outcomes, ended)
        # Every name the code says it exposes was scraped (and no other).
        url = f"http://127.0.0.1:{prometheus_port}/api/v1/label/__name__/values"
        with urllib.request.urlopen(url, timeout=5) as response:
            names = {n for n in json.load(response)["data"] if n.startswith("saga_")}
        assert names == SAMPLE_NAMES
        for name in ("saga_step_latency_seconds_bucket", "saga_consumer_lag"):
            assert query(prometheus_port, f"count(last_over_time({name}[5m]))"), name
        # Every hop of a saga's path was timed by the actors that take it.
        timed = query(
            prometheus_port,
            "sum by (hop) (max_over_time(saga_hop_seconds_count[5m])) > 0",
        )
        assert {r["metric"]["hop"] for r in timed} == set(HOPS)
        # And saga status shows them as the run's platform left them.
        status = subprocess.run(
            [sys.executable, "-m", "actors.app.cli", "status", "--json"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        section = json.loads(status.stdout)["hops"]
        assert section["state"] == "final", section
        assert {r["hop"] for r in section["hops"] if r["count"] > 0} == set(HOPS)
    finally:
        run.kill()
        run.wait()
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_the_grafana_dashboard_uses_only_exposed_metrics() -> None:
    dashboard = json.loads((ROOT / "grafana" / "saga-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    # Label names (saga_type) are not metrics: skip names used in "by (...)".
    used = {
        name
        for e in exprs
        for name in re.findall(r"\bsaga_[a-z_]+", re.sub(r"by \([^)]*\)", "", e))
    }
    assert used and used <= SAMPLE_NAMES, used - SAMPLE_NAMES
    # Every family has a panel.
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in SAMPLE_NAMES}
    assert {re.sub(r"_(bucket|count|sum)$", "", n) for n in used} == families


def test_ownership_gauges_show_epochs_hosts_and_restores_in_progress() -> None:
    """From the controller's answer: every partition's epoch with its host and
    node, partitions per host, and the restores under way; nothing at all when
    the controller did not answer (a gap, not a false zero)."""
    a, b = "saga-host-ab12-0", "saga-host-ab12-1"
    owners = [
        PartitionOwner(0, a, 3, "node-1"),
        PartitionOwner(1, b, 2, "node-2"),
        PartitionOwner(2, a, 1, "node-1"),
        PartitionOwner(3, b, 4, "node-2", state="moving"),
        PartitionOwner(4, "", 1, state="none"),
    ]
    samples = {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in ownership_metrics(owners)
    }
    assert samples["saga_partition_epoch"] == [
        ({"partition": "0", "host": a, "node": "node-1"}, 3),
        ({"partition": "1", "host": b, "node": "node-2"}, 2),
        ({"partition": "2", "host": a, "node": "node-1"}, 1),
        ({"partition": "3", "host": b, "node": "node-2"}, 4),
        ({"partition": "4", "host": "", "node": ""}, 1),
    ]
    assert samples["saga_partition_owned"] == [({"host": a}, 2), ({"host": b}, 1)]
    assert samples["saga_partitions_moving"] == [({}, 1)]
    names = {s.name for f in ownership_metrics(owners) for s in f.samples}
    assert names <= SAMPLE_NAMES
    assert list(ownership_metrics(None)) == []


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample of ``/metrics`` by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted(s.labels.items()))
            samples.setdefault(s.name, {})[labels] = s.value
    return samples


def test_counters_after_a_chaos_run_equal_its_summary(tmp_path: Path) -> None:
    """A saga host, a router and the projection writer are killed mid-run and
    requests and commands are sent twice: the sagas started and ended on
    /metrics, scraped once the run is over (the platform held up for it),
    are the run's summary, outcome by outcome, and the duration histogram
    counts each ended saga once. (Per-process counters lost the killed
    host's counts here.)"""
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        run = subprocess.Popen(
            [sys.executable, "-m", "actors.app.cli", "run", "--sagas", "1000",
             "--chaos", "--chaos-faults",
             "host-kill,router-kill,projection-kill,duplicates", "--seed", "14",
             "--json", "--metrics-port", str(port),
             "--metrics-linger", "600"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while "the run's final counts at" not in log.read_text():
                assert run.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never ended"
                time.sleep(0.5)
            final = scrape(port)
            run.send_signal(signal.SIGINT)  # ends the wait for a scrape
            stdout, _ = run.communicate(timeout=120)
        finally:
            run.kill()
            run.wait()
    summary = json.loads(stdout)
    proofs = summary["chaos_proofs"]
    assert len(proofs) == 4 and all(p["fired"] for p in proofs), proofs
    assert final["saga_started_total"] == {(("saga_type", "deposit"),): 1000.0}
    outcomes = ("completed", "compensated", "rejected", "failed")
    finished = {
        dict(labels)["outcome"]: n for labels, n in final["saga_finished_total"].items()
    }
    assert {o: finished.get(o, 0) for o in outcomes} == {
        o: summary[o] for o in outcomes
    }
    durations = {
        dict(labels)["outcome"]: n
        for labels, n in final["saga_duration_seconds_count"].items()
    }
    assert durations == finished
    assert run.returncode == 0, log.read_text()[-3000:]
