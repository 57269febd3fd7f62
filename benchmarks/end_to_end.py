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
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.clients import consumer_options, producer_options
from events.transport.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    ("user.commands.verify", "user.events.verify"),
    ("payment.commands.process", "payment.events.process"),
    ("account.commands.deposit", "account.events.deposit"),
)
PARTITIONS = 6


def _consumer(settings: KafkaSettings, topics: list[str]) -> Any:
    consumer = KafkaConsumer(**consumer_options(settings, None))
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    return consumer


def participant(bootstrap: str, command: str, reply: str) -> None:
    settings = KafkaSettings().with_bootstrap(bootstrap)
    producer = KafkaProducer(**producer_options(settings))
    consumer = _consumer(settings, [command])
    encode, decode = msgspec.json.encode, msgspec.json.decode
    while True:
        for records in consumer.poll(timeout_ms=100).values():
            for record in records:
                message = decode(record.value)
                if message.get("stop"):
                    producer.flush()
                    return
                answer = {"sagaId": message["sagaId"], "success": True}
                producer.send(reply, key=record.key, value=encode(answer))
        producer.flush()


def ceiling(count: int) -> float:
    """Sagas per second of the bare flow, from the first start to the last end."""
    with EmbeddedBroker() as broker:
        settings = KafkaSettings().with_bootstrap(broker.bootstrap)
        with TopicAdmin(settings) as admin:
            admin.ensure_topics(
                [t for pair in STEPS for t in pair], partitions=PARTITIONS
            )
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(
                target=participant, args=(broker.bootstrap, c, r), daemon=True
            )
            for c, r in STEPS
        ]
        for worker in workers:
            worker.start()
        producer = KafkaProducer(**producer_options(settings))
        consumer = _consumer(settings, [r for _, r in STEPS])
        next_step = {reply: i + 1 for i, (_, reply) in enumerate(STEPS)}
        encode = msgspec.json.encode
        started = time.perf_counter()
        for i in range(count):
            key = f"saga-{i}".encode()
            producer.send(STEPS[0][0], key=key, value=encode({"sagaId": f"saga-{i}"}))
        producer.flush()
        done = 0
        while done < count:
            for tp, records in consumer.poll(timeout_ms=100).items():
                step = next_step[tp.topic]
                for record in records:
                    if step == len(STEPS):
                        done += 1
                    else:
                        producer.send(
                            STEPS[step][0], key=record.key, value=record.value
                        )
            producer.flush()
        elapsed = time.perf_counter() - started
        for command, _ in STEPS:
            producer.send(
                command, key=b"stop", value=encode({"stop": True}), partition=0
            )
        producer.flush()
        for worker in workers:
            worker.join(timeout=30)
        producer.close()
        consumer.close()
        return count / elapsed


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
