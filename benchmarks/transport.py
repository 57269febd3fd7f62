"""Publish and consume N messages through the project's publisher and listener,
and the same through raw kafka-python, in one run; print messages/s and ratios.

    python benchmarks/transport.py [--messages 100000] [--rounds 3]
                                   [--bootstrap-servers HOST:PORT]

Both sides send the same pre-built messages to a fresh topic of the same
partition count, with the same producer and consumer tuning. The project's side
also encodes every message (msgspec) and decodes it on the way back, which raw
kafka-python, handed ready bytes, does not. Rounds alternate raw/project; the
medians are quoted. Consumption is timed from the poll that returned the first
records, so the consumer group's join delay (about 5 s on the embedded broker)
is left out on both sides.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaConsumer, KafkaProducer

from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.clients import consumer_options, producer_options
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.messages import CommandMessage, MessageCodec


def messages(count: int) -> list[CommandMessage]:
    now = datetime.now(UTC)
    return [
        CommandMessage(
            message_id=f"saga-{i}:deposit:1",
            saga_id=f"saga-{i % 5000}",
            step_id="deposit",
            timestamp=now,
            target_service="account",
            payload={
                "accountId": f"acc-{i % 977}",
                "amount": 100.25,
                "currency": "EUR",
            },
            metadata={"attempt": "1"},
        )
        for i in range(count)
    ]


def fresh_topic(settings: KafkaSettings) -> str:
    name = f"bench{uuid.uuid4().hex[:8]}.commands.deposit"
    with TopicAdmin(settings) as admin:
        admin.ensure_topics([name])
    return name


def raw_round(
    settings: KafkaSettings, batch: Sequence[CommandMessage]
) -> tuple[float, float]:
    codec = MessageCodec(settings.max_message_bytes)
    values = [(m.saga_id.encode(), codec.encode(m)) for m in batch]
    topic = fresh_topic(settings)
    producer = KafkaProducer(**producer_options(settings))
    started = time.perf_counter()
    for key, value in values:
        producer.send(topic, key=key, value=value)
    producer.flush()
    produce = len(values) / (time.perf_counter() - started)
    producer.close()

    consumer = KafkaConsumer(topic, **consumer_options(settings, f"raw-{topic}"))
    seen = 0
    started = None
    while seen < len(values):
        before = time.perf_counter()
        records = consumer.poll(timeout_ms=200)
        for partition_records in records.values():
            seen += len(partition_records)
        if records:
            started = started or before
            consumer.commit()
    assert started is not None
    consume = seen / (time.perf_counter() - started)
    consumer.close()
    return produce, consume


def project_round(
    settings: KafkaSettings, batch: Sequence[CommandMessage]
) -> tuple[float, float]:
    topic = fresh_topic(settings)
    with KafkaMessagePublisher(settings) as publisher:
        started = time.perf_counter()
        publisher.publish_batch((topic, m) for m in batch)
        produce = len(batch) / (time.perf_counter() - started)

    def handle(deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        return deliveries

    with KafkaEventListener(
        settings, [topic], handle, group_id=f"project-{topic}"
    ) as listener:
        started = None
        while listener.handled < len(batch):
            before = time.perf_counter()
            if listener.poll_once():
                started = started or before
        assert started is not None
        consume = listener.handled / (time.perf_counter() - started)
    return produce, consume


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap-servers", help="default: an embedded broker")
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.bootstrap_servers:
            bootstrap = args.bootstrap_servers
        else:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        settings = KafkaSettings().with_bootstrap(bootstrap)
        batch = messages(args.messages)
        print(
            f"{args.messages} messages of ~{len(MessageCodec().encode(batch[0]))} B, "
            f"{settings.topics.partitions} partitions, {args.rounds} rounds, "
            f"broker {bootstrap}",
            flush=True,
        )
        results: dict[str, list[tuple[float, float]]] = {"raw": [], "project": []}
        for round_no in range(1, args.rounds + 1):
            for name, run in (("raw", raw_round), ("project", project_round)):
                produce, consume = run(settings, batch)
                results[name].append((produce, consume))
                print(
                    f"  round {round_no} {name:<8} produce {produce:>9,.0f}/s  "
                    f"consume {consume:>9,.0f}/s",
                    flush=True,
                )

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    print()
    print("| path | produce msg/s | consume msg/s |")
    print("|---|---:|---:|")
    for name in ("raw", "project"):
        print(f"| {name} | {median(name, 0):,.0f} | {median(name, 1):,.0f} |")
    print(
        f"| ratio project/raw | {median('project', 0) / median('raw', 0):.2f} "
        f"| {median('project', 1) / median('raw', 1):.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
