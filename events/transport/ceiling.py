"""The bare ceiling: the deposit saga's three steps as plain kafka-python
loops, for ``saga bench`` to measure the platform against in the same run.

An orchestrator starts every saga and sends each next command when a reply
comes; one process per participant answers every command with success. No
log, no actors, no database, no retries; assigned partitions, no consumer
groups; on a broker of its own. What it reaches is what Kafka and the client
allow on the machine: the platform's throughput is quoted as a share of it.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Final

import msgspec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.clients import consumer_options, producer_options
from events.transport.settings import KafkaSettings

#: Each step's command topic and reply topic (the ceiling's own topics).
STEPS: Final = (
    ("ceiling.commands.verify", "ceiling.events.verify"),
    ("ceiling.commands.process", "ceiling.events.process"),
    ("ceiling.commands.deposit", "ceiling.events.deposit"),
)
PARTITIONS: Final = 6


def _consumer(settings: KafkaSettings, topics: list[str]) -> Any:
    consumer = KafkaConsumer(**consumer_options(settings, None))
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    return consumer


def _participant(bootstrap: str, command: str, reply: str) -> None:
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
    """Sagas a second of the bare flow, from the first start to the last end."""
    with EmbeddedBroker() as broker:
        settings = KafkaSettings().with_bootstrap(broker.bootstrap)
        with TopicAdmin(settings) as admin:
            admin.ensure_topics([t for pair in STEPS for t in pair], PARTITIONS)
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(
                target=_participant, args=(broker.bootstrap, c, r), daemon=True
            )
            for c, r in STEPS
        ]
        for worker in workers:
            worker.start()
        producer = KafkaProducer(**producer_options(settings))
        consumer = _consumer(settings, [r for _, r in STEPS])
        try:
            return count / _drive(producer, consumer, count)
        finally:
            encode = msgspec.json.encode
            for command, _ in STEPS:
                producer.send(
                    command, key=b"stop", value=encode({"stop": True}), partition=0
                )
            producer.flush()
            for worker in workers:
                worker.join(timeout=30)
            producer.close()
            consumer.close()


def _drive(producer: Any, consumer: Any, count: int) -> float:
    """Start ``count`` sagas and relay each reply to the next step; seconds."""
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
                    producer.send(STEPS[step][0], key=record.key, value=record.value)
        producer.flush()
    return time.perf_counter() - started
