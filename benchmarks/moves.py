"""Moving partitions between hosts: what one move costs, and what more hosts give.

    python benchmarks/moves.py [--in-flight 10000] [--moves 6] [--sagas 10000]
                               [--hosts 1 2 4]

- move: two hosts in-process on a fresh embedded broker; one partition holds
  ``--in-flight`` sagas waiting on a reply; it moves back and forth
  ``--moves`` times. Each move is the old owner's release (its last snapshot)
  then the new owner's grant (the claim, then the restore up to it: the
  snapshot and the log after it). Prints the median of each part.
- hosts: ``saga run --sagas N --json`` with ``engine.hosts`` set to each of
  ``--hosts`` (a fresh broker, a local Ray, the participants, the audit):
  sagas/s and latency per host count.

This machine has 2 cores: hosts share them with the routers, the services and
the broker, so more hosts cannot add CPU here; the figures show what a move
costs and that more hosts cost little, not how far a cluster scales.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datetime import UTC, datetime

from actors.core import start_message
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.inbound import Inbound
from actors.engine.settings import HostSettings
from benchmarks.end_to_end import platform
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from events.wire.messages import MessageCodec
from events.wire.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 2
INPUT = {"userId": "u", "accountId": "a", "amount": 5, "currency": "USD"}


def starts(count: int) -> list[Inbound]:
    codec = MessageCodec()
    now = datetime.now(UTC)
    ids = (f"m-{i}" for i in range(count * PARTITIONS * 2))
    on_zero = [s for s in ids if home_partition(s, PARTITIONS) == 0][:count]
    return [
        Inbound(
            "saga.requests",
            0,
            offset,
            saga_id,
            codec.encode(start_message(saga_id, "deposit", INPUT, now)),
        )
        for offset, saga_id in enumerate(on_zero)
    ]


def move(in_flight: int, moves: int) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        kafka = KafkaSettings().with_bootstrap(broker.bootstrap)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
        settings = HostSettings(snapshot_every=10**9)
        hosts = [
            SagaHost(kafka, PARTITIONS, settings, name=f"h{i}", start_timers=False)
            for i in range(2)
        ]
        try:
            own(hosts[0], [0])
            batch = starts(in_flight)
            for i in range(0, len(batch), 1000):
                hosts[0].handle(batch[i : i + 1000])
            releases, grants = [], []
            for n in range(moves):
                old, new = hosts[n % 2], hosts[(n + 1) % 2]
                started = time.perf_counter()
                old.release([0])
                released = time.perf_counter()
                [taken] = new.acquire({0: n + 2})
                granted = time.perf_counter()
                assert taken.won, taken
                releases.append(released - started)
                grants.append(granted - released)
            restored = hosts[moves % 2].stats()
        finally:
            for host in hosts:
                host.close()
    return {
        "in_flight": in_flight,
        "moves": moves,
        "release_ms_p50": round(statistics.median(releases) * 1000, 1),
        "grant_ms_p50": round(statistics.median(grants) * 1000, 1),
        "move_ms_p50": round(
            statistics.median(r + g for r, g in zip(releases, grants, strict=True))
            * 1000,
            1,
        ),
        "restored_sagas": restored.restored_sagas,
        "restored_records": restored.restored_records,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, default=10_000)
    parser.add_argument("--moves", type=int, default=6)
    parser.add_argument("--sagas", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args()
    print(json.dumps({"move": move(args.in_flight, args.moves)}), flush=True)
    for hosts in args.hosts:
        report = platform(args.sagas, "--set", f"engine.hosts={hosts}")
        keys = ("sagas_per_s", "p50_ms", "p99_ms", "audit")
        print(
            json.dumps({"hosts": hosts, **{k: report.get(k) for k in keys}}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
