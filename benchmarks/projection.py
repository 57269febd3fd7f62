"""How fast the projections take in saga events, and how far they trail a run.

    python benchmarks/projection.py [--records 200000] [--batch 2000]
                                    [--sagas 50000] [--rounds 3]

1. Ingest: deposit-saga log records (made by the real core, encoded as on
   ``saga.events``) applied by the ProjectionWriter to a fresh DuckDB file in
   batches, as the ProjectionActor does; saga events per second, plus the time
   to publish the Parquet files for readers at the end.
2. Lag: ``saga run --sagas N --json``; the projection's lag behind the log,
   sampled every quarter second during the run (p50 and max).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.restore import log_records
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter


def ingest(records: list[bytes], batch: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as directory:
        db = open_store(Path(directory) / "projections.duckdb")
        writer = ProjectionWriter(db)
        events = 0
        started = time.perf_counter()
        for i in range(0, len(records), batch):
            chunk = [
                Consumed("saga.events", 0, i + j, raw)
                for j, raw in enumerate(records[i : i + batch])
            ]
            events += writer.apply(chunk).events
        rate = events / (time.perf_counter() - started)
        publish = writer.publish(Path(directory) / "projections")
        db.close()
    return rate, publish, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--sagas", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = log_records(args.records)
    rates, publishes = [], []
    for _ in range(args.rounds):
        rate, publish, events = ingest(records, args.batch)
        rates.append(rate)
        publishes.append(publish)
        print(f"  ingest: {events:,} events at {rate:,.0f}/s; publish {publish:.2f} s")
    result = subprocess.run(
        [sys.executable, "-m", "actors.app.cli", "run", "--sagas", str(args.sagas),
         "--json", "--seed", "1"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"saga run failed:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout)
    lag = summary["projection_lag_s"]
    print(
        f"  saga run --sagas {args.sagas:,}: {summary['sagas_per_s']:,.0f} "
        f"sagas/s, lag {lag}"
    )
    print()
    print("| measure | figure | aim |")
    print("|---|---:|---:|")
    print(
        f"| ingest, saga events/s (batches of {args.batch:,}) "
        f"| {median(rates):,.0f} | |"
    )
    print(
        f"| publishing Parquet for readers, {len(records):,} records "
        f"| {median(publishes):.2f} s | |"
    )
    print(
        f"| projection lag during saga run --sagas {args.sagas:,}, p50 / max "
        f"| {lag['p50']:.2f} s / {lag['max']:.2f} s | < 2 s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
