"""The whole platform against its ceiling, at the same saga counts, in one run.

    python benchmarks/end_to_end.py [--sagas 10000 50000] [--rounds 1]

For each count:

- ceiling: the same 3-step deposit flow as bare kafka-python loops, each in its
  own process (an orchestrator that starts the sagas and sends each next
  command on a reply, and one process per participant that answers every
  command with success). No log, no actors, no database, no retries. Assigned
  partitions, no consumer groups, on a fresh embedded broker.
- platform: ``saga run --sagas N --json`` (a fresh embedded broker, Ray, the
  engine with every saga event logged, the participants on DuckDB with
  idempotency records, 2% injected faults, the audit).

Prints sagas/s for both, the ratio, and the platform's p50/p99 latency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events.transport.ceiling import ceiling

ROOT = Path(__file__).resolve().parents[1]


def platform(count: int, *flags: str) -> dict[str, Any]:
    """``saga run --sagas COUNT --json --seed 1 FLAGS``'s summary."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors.app.cli",
            "run",
            "--sagas",
            str(count),
            "--json",
            "--seed",
            "1",
            *flags,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if result.returncode != 0:
        raise SystemExit(f"saga run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for count in args.sagas:
        ceilings, runs = [], []
        for _ in range(args.rounds):
            ceilings.append(ceiling(count))
            print(f"  {count:,} sagas: ceiling {ceilings[-1]:,.0f}/s", flush=True)
            runs.append(platform(count))
            r = runs[-1]
            print(
                f"  {count:,} sagas: platform {r['sagas_per_s']:,.0f}/s, p50 "
                f"{r['p50_ms']:,.0f} ms, p99 {r['p99_ms']:,.0f} ms, audit {r['audit']}",
                flush=True,
            )
        top = statistics.median(ceilings)
        rate = statistics.median(r["sagas_per_s"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        rows.append((count, top, rate, p50, p99))
    print()
    print("| sagas | ceiling sagas/s | platform sagas/s | ratio | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, top, rate, p50, p99 in rows:
        cells = (
            f"{count:,}",
            f"{top:,.0f}",
            f"{rate:,.0f}",
            f"{rate / top:.2f}",
            f"{p50:,.0f}",
            f"{p99:,.0f}",
        )
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
