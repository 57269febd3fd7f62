"""``saga broker`` and ``saga topics``: the embedded development broker, and the
platform's topics on any cluster."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from actors.app.cli.common import (
    Commands,
    print_error,
    print_json,
    require_free_port,
    require_kafka,
)
from actors.app.config import SagaConfig
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.wire.topics import ALL_TOPICS


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    broker = commands.add_parser(
        "broker",
        parents=[common],
        help="run the embedded Kafka broker in the foreground",
        description="Start the embedded (memory-only) Kafka broker, create every "
        "platform topic on it, print `bootstrap: HOST:PORT`, and run until "
        "interrupted. Data is lost when it stops: for development only.",
    )
    broker.add_argument("--host", default="127.0.0.1", help="listen address")
    broker.add_argument("--port", type=int, help="listen port (default: a free one)")
    broker.add_argument(
        "--no-topics", action="store_true", help="do not create the platform topics"
    )
    broker.set_defaults(handler=run_broker)

    topics = commands.add_parser(
        "topics", help="create and list the platform's topics"
    ).add_subparsers(metavar="ACTION", required=True)
    topics.add_parser(
        "create",
        parents=[common],
        help="create missing topics (safe to repeat)",
        description="Create every platform topic that is missing, with the "
        "configured partition count. An existing topic with another partition "
        "count is an error, never silently accepted.",
    ).set_defaults(handler=topics_create)
    listing = topics.add_parser(
        "list",
        parents=[common],
        help="topics with partitions and end offsets",
        description="List the cluster's topics with their partition count and the "
        "end offset (high watermark) of each partition.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=topics_list)


def run_broker(args: argparse.Namespace, config: SagaConfig) -> int:
    if args.port is not None:
        # Else the broker fails to listen, and its topics are made on (and its
        # address printed for) whatever holds the port.
        require_free_port("--port", args.host, args.port)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    with EmbeddedBroker(
        args.host, args.port, long_poll=config.kafka.embedded_long_poll
    ) as broker:
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        if not args.no_topics:
            with TopicAdmin(config.kafka.with_bootstrap(broker.bootstrap)) as admin:
                report = admin.ensure_topics(ALL_TOPICS)
            print(
                f"topics: {len(report.created)} created with "
                f"{config.kafka.topics.partitions} partitions each",
                flush=True,
            )
        print(
            "memory-only broker running; Ctrl-C stops it", file=sys.stderr, flush=True
        )
        try:
            code = broker.wait()
        except KeyboardInterrupt:
            return 0
        print_error(f"the broker exited with code {code}")
        return 1


def topics_create(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    with TopicAdmin(config.kafka) as admin:
        report = admin.ensure_topics(ALL_TOPICS)
    for name in report.created:
        print(f"created  {name} ({config.kafka.topics.partitions} partitions)")
    for name in report.existing:
        print(f"exists   {name}")
    return 0


def topics_list(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    with TopicAdmin(config.kafka) as admin:
        topics = admin.describe()
    if args.json:
        print_json(
            [
                {
                    "topic": t.name,
                    "partitions": t.partitions,
                    "end_offsets": list(t.end_offsets),
                    "messages": t.messages,
                }
                for t in topics
            ]
        )
        return 0
    width = max([len("TOPIC"), *(len(t.name) for t in topics)])
    print(f"{'TOPIC':<{width}}  PARTITIONS  MESSAGES  END OFFSETS")
    for t in topics:
        offsets = ",".join(str(o) for o in t.end_offsets)
        print(f"{t.name:<{width}}  {t.partitions:>10}  {t.messages:>8}  {offsets}")
    return 0
