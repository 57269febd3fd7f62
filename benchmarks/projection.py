"""How fast the projections take in saga events, and how far they trail a run.

    python benchmarks/projection.py [--records 200000] [--batch 2000]
                                    [--in-flight 2000] [--sagas 50000]
                                    [--rounds 3]

1. Ingest: deposit-saga log records (made by the real core, encoded as on
   ``saga.events``) applied by the ProjectionWriter to a fresh DuckDB file in
   batches, as the ProjectionActor does, with ``--in-flight`` sagas
   interleaved as a busy log has them (each batch then holds one or two
   records of many sagas, and replaces each saga's row); saga events per
   second in batches of 200 (a poll's worth) and of ``--batch`` (what the
   actor gathers), plus the time to publish the Parquet files for readers.
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

from actors.core import HistoryCodec
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


def interleaved(records: list[bytes], in_flight: int) -> list[bytes]:
    """The records of ``in_flight`` sagas at a time, round-robin: each saga's
    first record, then each one's second, and so on (each saga's stay in
    order). ``log_records`` gives them saga after saga."""
    codec = HistoryCodec()
    sagas: list[list[bytes]] = []
    last = ""
    for raw in records:
        saga_id = codec.decode(raw).saga_id
        if saga_id != last:
            sagas.append([])
            last = saga_id
        sagas[-1].append(raw)
    out: list[bytes] = []
    for start in range(0, len(sagas), in_flight):
        block = sagas[start : start + in_flight]
        for k in range(max(len(saga) for saga in block)):
            out.extend(saga[k] for saga in block if k < len(saga))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--in-flight", type=int, default=2_000)
    parser.add_argument("--sagas", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = interleaved(log_records(args.records), args.in_flight)
    sizes = (200, args.batch)
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    publishes = []
    for _ in range(args.rounds):
        for size in sizes:
            rate, publish, events = ingest(records, size)
            rates[size].append(rate)
            publishes.append(publish)
            print(
                f"  ingest, batches of {size:,}: {events:,} events at "
                f"{rate:,.0f}/s; publish {publish:.2f} s"
            )
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
    for size in sizes:
        print(
            f"| ingest, saga events/s ({args.in_flight:,} sagas in flight, "
            f"batches of {size:,}) | {median(rates[size]):,.0f} | |"
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
