"""``saga serve``: the platform on Ray until interrupted (the engine, the
projection writer and, unless they live elsewhere, the demo participant
services), with a status line every few seconds. It starts what ``saga run``
starts, through the same path, minus the workload."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from actors.app.cli.common import Commands, require_free_port, require_positive
from actors.app.config import SagaConfig, env_name

if TYPE_CHECKING:
    from typing import TextIO

    from actors.runtime.engine import Engine
    from events.transport.broker import EmbeddedBroker


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the platform (engine and services on Ray) until interrupted",
        description="Start the platform on Ray (local unless --ray-address), "
        "against the configured Kafka or, with none, an embedded broker whose "
        "address it prints. With the embedded broker it runs the demo user, "
        "payment and account services too (their DuckDB files in DATA_DIR), so "
        "`saga start` runs a saga to its end; against a configured Kafka the "
        "services live elsewhere unless --services says otherwise. "
        "engine.hosts SagaHost actors take the partitions a controller grants "
        "them (each restored from saga.events), engine.routers RouterActors "
        "join the consumer group over saga.requests and the reply topics, and "
        "the projection writer keeps DATA_DIR's DuckDB tables. With "
        "engine.name set, these are detached Ray actors named after it: a "
        "saga serve started again with the name goes on with them, and saga "
        "scale changes them. Prints a status line every --every seconds; "
        "Ctrl-C stops it cleanly (a kill loses nothing either).",
    )
    serve.add_argument(
        "--every",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between status lines",
    )
    services = serve.add_mutually_exclusive_group()
    services.add_argument(
        "--services",
        dest="services",
        action="store_true",
        default=None,
        help="run the demo participant services (the default with the embedded "
        "broker; never on a production cluster: they apply payments and "
        "deposits to local files)",
    )
    services.add_argument(
        "--no-services",
        dest="services",
        action="store_false",
        help="run no participant services: they live elsewhere (the default "
        "against a configured Kafka)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at :PORT/metrics",
    )
    serve.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="ADDR",
        help="the address the metrics endpoint binds (default: loopback only; "
        "0.0.0.0 for every interface)",
    )
    serve.set_defaults(handler=serve_engine)


def serve_engine(args: argparse.Namespace, config: SagaConfig) -> int:
    require_positive("--every", args.every)
    if args.metrics_port is not None:
        # Before the broker and Ray start: seconds of start-up, then a traceback.
        require_free_port("--metrics-port", args.metrics_addr, args.metrics_port)
    # The platform (and Ray with it) is imported here, not at the top: the
    # other commands start in a fraction of the time without it.
    from actors.app.platform import kafka_for, running_platform
    from actors.participants import seed_demo

    # While Ray runs, stdout is its log file (its threads print there): this
    # command's own lines go to the stream stdout was.
    out = sys.stdout

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def announce(broker: EmbeddedBroker) -> None:
        print(
            f"bootstrap: {broker.bootstrap} (embedded broker, memory-only)\n"
            "for the other commands: export "
            f"{env_name('kafka.bootstrap_servers')}={broker.bootstrap}",
            file=out,
            flush=True,
        )

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    embedded = not config.kafka.bootstrap_servers
    services = embedded if args.services is None else args.services
    data_dir = Path(config.data_dir)
    if services:
        seeded = seed_demo(data_dir)
        if seeded:
            say(
                f"seeded demo data for {', '.join(seeded)}: users u-1..u-100, "
                "accounts a-1..a-100 (blocked-1 and closed-1 to see a saga fail)"
            )
    # A supervisor's stop is a Ctrl-C: the platform stops in order, then Ray
    # (running_platform keeps this handler when Ray starts).
    signal.signal(signal.SIGTERM, terminate)
    # On a configured cluster the topics are made by `saga topics create` (or
    # the operator's own tooling), never made for the services by the engine.
    with (
        kafka_for(config, announce, create_topics=False) as kafka,
        running_platform(
            config,
            kafka,
            data_dir,
            services=services,
            metrics_port=args.metrics_port,
            metrics_addr=args.metrics_addr,
            say=say,
        ) as platform,
    ):
        platform.wait_ready(say)
        if services:
            print(
                f"participants: {', '.join(sorted(platform.participants))} "
                f"(demo services; data in {data_dir})",
                file=out,
                flush=True,
            )
        return report_until_stopped(platform.engine, args.every, out)


def report_until_stopped(engine: Engine, every: float, out: TextIO) -> int:
    """Print the hosts' counters on ``out`` every ``every`` seconds until
    Ctrl-C (or SIGTERM)."""
    from ray.exceptions import RayError

    # The announcement is inside the try: a supervisor that stops the engine
    # the moment it reads the line gets the clean stop (CI's SIGTERM once
    # landed between the print and the try and ended with 130).
    try:
        print(
            f"engine running: {len(engine.hosts)} hosts, {len(engine.routers)} "
            f"routers, {engine.partitions} partitions; Ctrl-C stops it",
            file=out,
            flush=True,
        )
        while True:
            time.sleep(every)
            try:
                hosts = engine.host_stats()
            except RayError as exc:
                # Ray restarts the actor; the engine goes on without a driver.
                print(
                    f"a host is restarting: {type(exc).__name__}",
                    file=out,
                    flush=True,
                )
                continue
            print(
                f"in flight {sum(h.in_flight for h in hosts)}  "
                f"ended {sum(h.finished for h in hosts)}  "
                f"applied {sum(h.applied for h in hosts)}  "
                f"duplicates {sum(h.duplicates for h in hosts)}  "
                f"dead letters {sum(h.dead_letters for h in hosts)}  "
                f"timers {sum(h.timers_fired for h in hosts)}",
                file=out,
                flush=True,
            )
            for i, h in enumerate(hosts):
                if h.log_lost:
                    print(f"host {i} STOPPED: {h.log_lost}", file=out, flush=True)
    except KeyboardInterrupt:
        # A second Ctrl-C (or a supervisor's SIGTERM after SIGINT) must not
        # cut the clean stop (the platform's, on leaving) short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping", file=sys.stderr, flush=True)
        return 0
