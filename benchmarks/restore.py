"""How fast saga state comes back, and what an in-flight saga costs in memory.

    python benchmarks/restore.py [--sagas 10000] [--records 200000] [--rounds 3]

Three figures, each the median of ``--rounds``:

1. Replay: log records of deposit sagas (made by the real core, encoded as they
   are on ``saga.events``) decoded, passed through the fence and folded into
   state, in saga events per second. Pure CPU, no broker.
2. Host restore: a host (in-process, on the embedded broker) logs
   ``--history`` sagas that end, then takes ``--sagas`` starts and a reply for
   half of them, snapshots, takes a tail of more replies, and goes away; a new
   host is built and its restore timed (newest snapshot + log tail + timers
   re-armed: the host takes work from then on), then the re-sending of the
   commands the tail issued. The same again with no snapshot (the whole log
   replayed) for comparison.
3. Memory: bytes retained per in-flight saga inside a host (tracemalloc), with
   its timer entry and the map that holds it.

Figures 2 and 3 are measured by :mod:`actors.app.bench.restore`, which
``saga bench`` reports from too.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.app.bench.restore import INPUT, host_restore, memory_per_saga
from actors.core import (
    DEPOSIT,
    Fence,
    HistoryCodec,
    LogRecord,
    Reply,
    SagaState,
    Start,
    decide,
    evolve,
)
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.settings import KafkaSettings
from events.wire.topics import ALL_TOPICS


def log_records(count: int) -> list[bytes]:
    """Encoded records of whole deposit sagas, as a host writes them."""
    codec = HistoryCodec()
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        saga_id = f"saga-{i:08d}"
        state: SagaState | None = None
        item: Start | Reply = Start(
            saga_id=saga_id, saga_type="deposit", input=INPUT, now=1_000 + i
        )
        while True:
            decision = decide(DEPOSIT, state, item)
            seq = 1 if state is None else state.seq + 1
            out.append(
                codec.encode(
                    LogRecord(
                        saga_id=saga_id,
                        saga_type="deposit",
                        seq=seq,
                        at=item.now,
                        events=decision.events,
                    )
                )
            )
            state = decision.state
            assert state is not None
            if state.status.terminal or not decision.commands:
                break
            command = decision.commands[0].message
            item = Reply(
                saga_id=saga_id,
                topic=command.metadata["replyTopic"],
                step_id=command.step_id,
                message_id=f"r-{command.message_id}",
                success=True,
                payload={"paymentId": f"pay-{i}"},
                error=None,
                now=item.now + 5,
            )
        i += 1
    return out[:count]


def replay_rate(records: list[bytes]) -> tuple[float, int]:
    fence = Fence()  # as every reader of the log reads it
    states: dict[str, SagaState] = {}
    events = 0
    started = time.perf_counter()
    for raw in records:
        record = fence.read(0, raw)
        assert record is not None
        state = states.get(record.saga_id)
        for event in record.events:
            state = evolve(state, event)
            events += 1
        assert state is not None
        states[record.saga_id] = state
    return events / (time.perf_counter() - started), events


@contextmanager
def fresh(partitions: int) -> Iterator[KafkaSettings]:
    """A broker of its own per measurement: no log left over from the last."""
    with EmbeddedBroker() as broker:
        kafka = KafkaSettings().with_bootstrap(broker.bootstrap)
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS, partitions=partitions)
        yield kafka


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument(
        "--history", type=int, default=20_000, help="ended sagas logged before"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    partitions = KafkaSettings().topics.partitions

    records = log_records(args.records)
    rates = []
    for _ in range(args.rounds):
        rate, events = replay_rate(records)
        rates.append(rate)
        print(f"  replay: {events:,} events: {rate:,.0f} events/s", flush=True)

    restores: dict[bool, list[float]] = {True: [], False: []}
    resends: dict[bool, list[float]] = {True: [], False: []}
    memory = []
    for _ in range(args.rounds):
        for snapshot in (True, False):
            with fresh(partitions) as kafka:
                seconds, resend, stats = host_restore(
                    kafka, args.sagas, args.history, snapshot
                )
            restores[snapshot].append(seconds)
            resends[snapshot].append(resend)
            how = "snapshot + tail" if snapshot else "whole log"
            print(
                f"  restore ({how}): {seconds:.2f} s, then {stats.resent:,} "
                f"commands re-sent in {resend:.2f} s "
                f"({stats.restored_sagas:,} sagas from snapshots, "
                f"{stats.restored_records:,} log records)",
                flush=True,
            )
        with fresh(partitions) as kafka:
            memory.append(memory_per_saga(kafka, args.sagas))
        print(f"  memory: {memory[-1]:,.0f} B per in-flight saga", flush=True)

    n = f"{args.sagas:,}"
    rows = [
        (
            "replay (decode + evolve), saga events/s",
            f"{median(rates):,.0f}",
            ">= 100,000",
        ),
        (
            f"host restore of {n} sagas, snapshot + tail",
            f"{median(restores[True]):.2f} s",
            "< 2 s",
        ),
        (
            f"host restore of {n} sagas, whole log",
            f"{median(restores[False]):.2f} s",
            "",
        ),
        (
            "then re-sending the tail's commands (snapshot + tail)",
            f"{median(resends[True]):.2f} s",
            "",
        ),
        (
            "memory per in-flight saga in a host",
            f"{median(memory):,.0f} B",
            "<= 2,048 B",
        ),
    ]
    print()
    print("| measure | median | aim |")
    print("|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
