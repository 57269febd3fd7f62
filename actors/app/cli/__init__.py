"""The ``saga`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from actors.app.client import SagaClient
from actors.app.config import CONFIG_ENV, SagaConfig, env_name, load_config, redacted
from actors.core import TAG_OF
from actors.errors import ConfigError, SagaError
from events.errors import EventsError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.dlq import DeadLetterQueue, Entry
from events.wire.topics import ALL_TOPICS
from projections.errors import ProjectionError

EPILOG = f"""\
configuration (lowest to highest precedence): a TOML file (--config or ${CONFIG_ENV}),
SAGA_* environment variables (e.g. {env_name("kafka.bootstrap_servers")}), then flags.
`saga config show` prints the result and lists every key; passwords are only read
from the file or the environment and are never printed.
"""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE", help="TOML configuration file")
    group.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help="Kafka brokers (kafka.bootstrap_servers); empty means embedded",
    )
    group.add_argument(
        "--security-protocol",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="kafka.security.protocol",
    )
    group.add_argument(
        "--sasl-mechanism",
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="kafka.security.sasl_mechanism",
    )
    group.add_argument("--sasl-username", help="kafka.security.sasl_username")
    group.add_argument(
        "--partitions", type=int, metavar="N", help="kafka.topics.partitions"
    )
    group.add_argument("--ray-address", help="ray.address")
    group.add_argument("--data-dir", metavar="DIR", help="data_dir")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any configuration key, e.g. --set kafka.producer.linger_ms=10",
    )
    return common


_FLAG_KEYS = {
    "bootstrap_servers": "kafka.bootstrap_servers",
    "security_protocol": "kafka.security.protocol",
    "sasl_mechanism": "kafka.security.sasl_mechanism",
    "sasl_username": "kafka.security.sasl_username",
    "partitions": "kafka.topics.partitions",
    "ray_address": "ray.address",
    "data_dir": "data_dir",
}


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="saga",
        description="Saga orchestration for the trading platform: the engine, "
        "sagas, Kafka topics, the embedded development broker and the "
        "configuration.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    topics = commands.add_parser(
        "topics", help="create and list the platform's topics"
    ).add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    topics.add_parser(
        "create",
        parents=[common],
        help="create missing topics (safe to repeat)",
        description="Create every platform topic that is missing, with the "
        "configured partition count. An existing topic with another partition "
        "count is an error, never silently accepted.",
    )
    listing = topics.add_parser(
        "list",
        parents=[common],
        help="topics with partitions and end offsets",
        description="List the cluster's topics with their partition count and the "
        "end offset (high watermark) of each partition.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the whole platform end to end: N deposit sagas and an audit",
        description="Start everything (a local Ray, an embedded broker unless "
        "--bootstrap-servers, the saga engine, the user, payment and account "
        "services), seed users and accounts, run N deposit sagas with a "
        "realistic mix (most complete, some rejected, some compensated, "
        "injected transient faults forcing retries), and print counts per "
        "outcome, sagas/s, p50/p99 latency, dead letters, and an audit read from "
        "the services' DuckDB files. Exit code 1 if the audit finds a violation.",
    )
    run.add_argument(
        "--sagas", type=int, default=1_000, metavar="N", help="sagas to run"
    )
    run.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL a saga host and a participant service at random moments",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--max-in-flight",
        type=int,
        default=5_000,
        metavar="N",
        help="sagas sent but not yet ended, at most (the load generator's window)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at :PORT/metrics while the run lasts",
    )
    run.add_argument(
        "--seed", type=int, help="workload and chaos seed (default: random)"
    )
    run.add_argument(
        "--faults",
        type=float,
        default=0.02,
        metavar="P",
        help="share of service batches failing once with an injected fault",
    )
    run.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up when no saga ended for this long",
    )

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the saga engine (hosts and routers on Ray) until interrupted",
        description="Start the saga engine on Ray (local unless --ray-address), "
        "against the configured Kafka or, with none, an embedded broker whose "
        "address it prints: "
        "engine.hosts SagaHost actors restore their partitions from saga.events, "
        "engine.routers RouterActors join the consumer group over saga.requests "
        "and the reply topics, and the projection writer keeps DATA_DIR's "
        "DuckDB tables. Prints a status line every --every seconds; "
        "Ctrl-C stops it cleanly (a kill loses nothing either).",
    )
    serve.add_argument(
        "--every", type=float, default=10.0, metavar="S", help="status interval"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at :PORT/metrics",
    )
    top = commands.add_parser(
        "top",
        parents=[common],
        help="saga status, live, refreshing in the terminal",
        description="Print `saga status` every --every seconds, in place, until "
        "Ctrl-C.",
    )
    top.add_argument(
        "--every", type=float, default=2.0, metavar="S", help="refresh interval"
    )

    start = commands.add_parser(
        "start",
        parents=[common],
        help="request a saga; prints its sagaId",
        description="Write a start request to saga.requests. The engine (`saga "
        "serve`) runs it. Example: saga start deposit --input "
        '\'{"userId": "u-1", "accountId": "a-1", "amount": 250, "currency": "USD"}\'',
    )
    start.add_argument("saga_type", metavar="TYPE", help="saga type, e.g. deposit")
    start.add_argument(
        "--input", required=True, metavar="JSON", help="the saga input, a JSON object"
    )
    start.add_argument("--saga-id", help="sagaId to use (default: a new UUID)")

    show_saga = commands.add_parser(
        "show",
        parents=[common],
        help="a saga's state and history, read from saga.events",
        description="Fold a saga's records on saga.events into its state and "
        "print both. Works without the engine running.",
    )
    show_saga.add_argument("saga_id", metavar="SAGA_ID")
    show_saga.add_argument("--json", action="store_true", help="print JSON")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="sagas per status, throughput, latencies, rates, lag",
        description="Read the published projections under DATA_DIR/projections "
        "(while the platform runs: no lock is taken) and, when Kafka is "
        "configured, the consumer lag of every group from Kafka itself.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    history = commands.add_parser(
        "history",
        parents=[common],
        help="one saga's events in order, with timings, from the projections",
        description="Print a saga's events from DATA_DIR/projections, each with "
        "its time since the saga started.",
    )
    history.add_argument("saga_id", metavar="SAGA_ID")
    history.add_argument("--json", action="store_true", help="print JSON")

    dlq = commands.add_parser(
        "dlq", help="inspect dead letters and send them back"
    ).add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dlq_list = dlq.add_parser(
        "list",
        parents=[common],
        help="the letters on saga.dlq, oldest first",
        description="List dead letters: their id (PARTITION:OFFSET on saga.dlq), "
        "when and by whom they were given up on, their origin and the reason.",
    )
    dlq_show = dlq.add_parser(
        "show",
        parents=[common],
        help="one letter in full, with its original message",
        description="Print one dead letter, its original payload decoded as "
        "text when it is UTF-8 (base64 otherwise).",
    )
    dlq_show.add_argument("id", metavar="PARTITION:OFFSET")
    dlq_replay = dlq.add_parser(
        "replay",
        parents=[common],
        help="send letters back to their original topic",
        description="Publish each chosen letter's original bytes, with its "
        "original key, to its original topic and partition. Choose one by id, "
        "or --all (optionally narrowed by --topic and --saga-id).",
    )
    dlq_replay.add_argument("id", nargs="?", metavar="PARTITION:OFFSET")
    dlq_replay.add_argument("--all", action="store_true", help="every matching letter")
    dlq_replay.add_argument(
        "--dry-run", action="store_true", help="say what would be sent, send nothing"
    )
    for sub_parser in (dlq_list, dlq_replay):
        sub_parser.add_argument("--topic", help="only letters from this topic")
        sub_parser.add_argument("--saga-id", help="only letters of this saga")
    for sub_parser in (dlq_list, dlq_show):
        sub_parser.add_argument("--json", action="store_true", help="print JSON")

    config = commands.add_parser(
        "config", help="show the effective configuration"
    ).add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config.add_parser(
        "show",
        parents=[common],
        help="print the configuration (secrets masked)",
        description="Print the configuration after file, environment and flags "
        "are applied, with each key's environment variable name.",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    return parser


def config_from_args(args: argparse.Namespace) -> SagaConfig:
    overrides: dict[str, Any] = {}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        overrides[key.strip()] = value
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides=overrides)


def _bootstrap(config: SagaConfig) -> None:
    if not config.kafka.bootstrap_servers:
        raise ConfigError(
            "no Kafka configured: pass --bootstrap-servers HOST:PORT, set "
            f"{env_name('kafka.bootstrap_servers')}, or start one with `saga broker`"
        )


def _run_broker(args: argparse.Namespace, config: SagaConfig) -> int:
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    with EmbeddedBroker(args.host, args.port) as broker:
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
        print(f"error: the broker exited with code {code}", file=sys.stderr)
        return 1


def _topics_create(config: SagaConfig) -> int:
    _bootstrap(config)
    with TopicAdmin(config.kafka) as admin:
        report = admin.ensure_topics(ALL_TOPICS)
    for name in report.created:
        print(f"created  {name} ({config.kafka.topics.partitions} partitions)")
    for name in report.existing:
        print(f"exists   {name}")
    return 0


def _topics_list(args: argparse.Namespace, config: SagaConfig) -> int:
    _bootstrap(config)
    with TopicAdmin(config.kafka) as admin:
        topics = admin.describe()
    if args.json:
        rows = [
            {
                "topic": t.name,
                "partitions": t.partitions,
                "end_offsets": list(t.end_offsets),
                "messages": t.messages,
            }
            for t in topics
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len("TOPIC"), *(len(t.name) for t in topics)])
    print(f"{'TOPIC':<{width}}  PARTITIONS  MESSAGES  END OFFSETS")
    for t in topics:
        offsets = ",".join(str(o) for o in t.end_offsets)
        print(f"{t.name:<{width}}  {t.partitions:>10}  {t.messages:>8}  {offsets}")
    return 0


def _run(args: argparse.Namespace, config: SagaConfig) -> int:
    import ray

    from actors.app.run import RunOptions, progress_bar, run

    if args.sagas < 1:
        raise ConfigError("--sagas must be at least 1")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    options = RunOptions(
        sagas=args.sagas,
        chaos=args.chaos,
        seed=seed,
        faults=args.faults,
        stall_timeout_s=args.stall_timeout,
        data_dir=args.data_dir,
        quiet=args.json,
        metrics_port=args.metrics_port,
        max_in_flight=args.max_in_flight,
    )

    def say(text: str) -> None:
        print(f"\n{text}" if not args.json else text, file=sys.stderr, flush=True)

    say(
        f"seed {seed}: {args.sagas:,} deposit sagas"
        + (" with chaos" if args.chaos else "")
    )
    # Ray prints notices (a killed worker, say) on stdout from its own threads:
    # with --json, stdout carries the summary and nothing else.
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        summary = run(config, options, say, progress_bar())
        # Late notices too: Ray's threads stop before the summary is printed.
        ray.shutdown()
    clean = not any(summary.audit.values())
    if args.json:
        print(json.dumps(msgspec.to_builtins(summary)))
        return 0 if clean else 1
    print(
        f"sagas        {summary.sagas:,}: {summary.completed:,} completed, "
        f"{summary.compensated:,} compensated, {summary.rejected:,} rejected, "
        f"{summary.failed:,} failed"
    )
    print(
        f"throughput   {summary.sagas_per_s:,.1f} sagas/s "
        f"over {summary.elapsed_s:,.1f} s"
    )
    print(f"latency      p50 {summary.p50_ms:,.0f} ms, p99 {summary.p99_ms:,.0f} ms")
    print(f"dead letters {summary.dlq:,}")
    lag = summary.projection_lag_s
    print(f"projection   lag p50 {lag['p50']:.2f} s, max {lag['max']:.2f} s")
    verdict = "clean" if clean else "VIOLATIONS"
    details = ", ".join(f"{k} {v}" for k, v in summary.audit.items())
    print(f"audit        {verdict}: {details}")
    for note in summary.chaos:
        print(f"chaos        {note}")
    if summary.data_dir:
        print(f"data         {summary.data_dir}")
    return 0 if clean else 1


def _serve(args: argparse.Namespace, config: SagaConfig) -> int:
    # Ray is imported here, not at the top: the other commands start in a
    # fraction of the time without it.
    from actors.runtime import Engine, ensure_ray, start_projection

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    with ExitStack() as stack:
        kafka = config.kafka
        if kafka.bootstrap_servers:
            with TopicAdmin(kafka) as admin:
                admin.check_topics(ALL_TOPICS)
        else:
            broker = stack.enter_context(EmbeddedBroker())
            kafka = kafka.with_bootstrap(broker.bootstrap)
            with TopicAdmin(kafka) as admin:
                admin.ensure_topics(ALL_TOPICS)
            print(
                f"bootstrap: {broker.bootstrap} (embedded broker, memory-only)",
                flush=True,
            )
        ensure_ray(config.ray)
        engine = Engine(kafka, config.engine)
        projection = start_projection(kafka, Path(config.data_dir))
        if args.metrics_port is not None:
            from actors.app.metrics import PlatformCollector, serve_metrics
            from actors.participants import consumer_groups

            serve_metrics(
                args.metrics_port,
                PlatformCollector(
                    kafka,
                    engine.hosts,
                    engine.routers,
                    {},
                    projection,
                    consumer_groups(config.kafka.consumer.group_id),
                ),
            )
            print(f"metrics at http://localhost:{args.metrics_port}/metrics")
        return _serve_engine(engine, projection, args.every)


def _serve_engine(engine: Any, projection: Any, every: float) -> int:
    import ray

    print(
        f"engine running: {len(engine.hosts)} hosts, {len(engine.routers)} "
        f"routers, {engine.partitions} partitions; Ctrl-C stops it",
        flush=True,
    )
    try:
        while True:
            time.sleep(every)
            hosts = engine.host_stats()
            print(
                f"in flight {sum(h.in_flight for h in hosts)}  "
                f"ended {sum(h.finished for h in hosts)}  "
                f"applied {sum(h.applied for h in hosts)}  "
                f"duplicates {sum(h.duplicates for h in hosts)}  "
                f"dead letters {sum(h.dead_letters for h in hosts)}  "
                f"timers {sum(h.timers_fired for h in hosts)}",
                flush=True,
            )
    except KeyboardInterrupt:
        # A second Ctrl-C (or a supervisor's SIGTERM after SIGINT) must not
        # cut the clean stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping", file=sys.stderr, flush=True)
        engine.stop()
        ray.get(projection.stop.remote(), timeout=60)
        return 0


def _start(args: argparse.Namespace, config: SagaConfig) -> int:
    _bootstrap(config)
    try:
        saga_input = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--input is not JSON: {exc}") from None
    if not isinstance(saga_input, dict):
        raise ConfigError('--input must be a JSON object, e.g. \'{"userId": "u-1"}\'')
    with SagaClient(config.kafka) as client:
        print(client.start(args.saga_type, saga_input, args.saga_id))
    return 0


def _show(args: argparse.Namespace, config: SagaConfig) -> int:
    _bootstrap(config)
    with SagaClient(config.kafka) as client:
        history = client.history(args.saga_id)
        state = client.state(args.saga_id)
    if state is None:
        print(f"error: no saga {args.saga_id} in saga.events", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "state": msgspec.to_builtins(state),
                    "history": msgspec.to_builtins(history),
                },
                indent=2,
            )
        )
        return 0
    print(f"saga {state.saga_id} ({state.saga_type}): {state.status}")
    if state.reason:
        print(f"reason: {state.reason}")
    started = history[0].at
    for record in history:
        for seq, event in enumerate(record.events, record.seq):
            fields = {
                k: v
                for k, v in msgspec.to_builtins(event).items()
                if k not in ("type", "sagaId", "sagaType")
            }
            detail = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
            print(
                f"{seq:>4}  +{record.at - started:>7} ms  "
                f"{TAG_OF[type(event)]:<24} {detail}"
            )
    return 0


def _projections(config: SagaConfig) -> Any:
    from projections.reader import open_projections

    return open_projections(Path(config.data_dir) / "projections")


def _status(args: argparse.Namespace, config: SagaConfig) -> int:
    report = _status_report(config)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(_status_text(report))
    return 0


def _top(args: argparse.Namespace, config: SagaConfig) -> int:
    try:
        while True:
            text = _status_text(_status_report(config))
            stamp = time.strftime("%H:%M:%S")
            # Clear the screen and home the cursor, then redraw.
            sys.stdout.write(
                f"\x1b[2J\x1b[H{stamp}  saga top (Ctrl-C quits)\n\n{text}\n"
            )
            sys.stdout.flush()
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0


def _status_report(config: SagaConfig) -> dict[str, Any]:
    from projections.reader import published_age_s
    from projections.status import status

    db = _projections(config)
    report = status(db)
    directory = Path(config.data_dir) / "projections"
    projection: dict[str, Any] = {
        "published_age_s": round(published_age_s(directory), 3)
    }
    if config.kafka.bootstrap_servers:
        from actors.participants import consumer_groups

        groups = consumer_groups(config.kafka.consumer.group_id)
        with TopicAdmin(config.kafka) as admin:
            lags = [lag for group in groups for lag in admin.consumer_lag(group)]
        report["consumer_lag"] = [msgspec.to_builtins(lag) for lag in lags]
        projection["lag_records"] = sum(
            lag.lag for lag in lags if lag.group == "saga-projection"
        )
    report["projection"] = projection
    return report


def _status_text(report: dict[str, Any]) -> str:
    lines = [
        f"{row['saga_type']:<12} {row['status']:<13} {row['count']:>9,}"
        for row in report["sagas"]
    ]
    tp = report["throughput_per_s"]
    lines.append(
        f"throughput   {tp['1m'] or 0:,.1f}/s (1 min), {tp['5m'] or 0:,.1f}/s (5 min)"
    )
    for name in ("saga_latency_ms", "step_latency_ms"):
        q = report[name]
        values = ", ".join(f"{k} {v or 0:,.0f}" for k, v in q.items())
        lines.append(f"{name.removesuffix('_ms').replace('_', ' '):<12} {values} ms")
    lines.append(
        f"rates        errors {report['error_rate'] or 0:.1%}, "
        f"compensations {report['compensation_rate'] or 0:.1%}"
    )
    lines.append(f"dead letters {report['dead_letters']:,}")
    for lag in report.get("consumer_lag", []):
        if lag["lag"]:
            lines.append(
                f"lag          {lag['group']} {lag['topic']}/{lag['partition']}: "
                f"{lag['lag']:,}"
            )
    projection = report["projection"]
    behind = projection.get("lag_records")
    lines.append(
        f"projection   published {projection['published_age_s']:.1f} s ago"
        + ("" if behind is None else f", {behind:,} records behind")
    )
    return "\n".join(lines)


def _history(args: argparse.Namespace, config: SagaConfig) -> int:
    from projections.status import history

    events = history(_projections(config), args.saga_id)
    if not events:
        print(f"error: no saga {args.saga_id} in the projections", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    for event in events:
        print(
            f"{event['seq']:>4}  +{event['since_start_ms']:>7} ms  "
            f"{event['event_type']:<24} {event['data']}"
        )
    return 0


def _letter_json(entry: Entry, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"id": entry.id, **msgspec.to_builtins(entry.letter)}
    payload = entry.letter.payload
    if full:
        try:
            data["payload"] = payload.decode()
            data["payloadEncoding"] = "utf-8"
        except UnicodeDecodeError:
            data["payloadEncoding"] = "base64"
    else:
        del data["payload"]
    return data


def _dlq(args: argparse.Namespace, config: SagaConfig) -> int:
    _bootstrap(config)
    with DeadLetterQueue(config.kafka) as queue:
        if args.dlq_command == "show":
            entry = queue.entry(args.id)
            data = _letter_json(entry, full=True)
            if args.json:
                print(json.dumps(data, indent=2))
            else:
                for key, value in data.items():
                    print(f"{key:>16}: {value}")
            return 0
        if args.dlq_command == "list":
            entries = queue.entries(topic=args.topic, saga_id=args.saga_id)
            if args.json:
                print(
                    json.dumps([_letter_json(e, full=False) for e in entries], indent=2)
                )
                return 0
            print(
                f"{'ID':<10} {'DEAD AT':<20} {'SOURCE':<16} {'ORIGIN':<34} "
                f"{'TRIES':>5}  ERROR"
            )
            for e in entries:
                letter = e.letter
                origin = f"{letter.topic}/{letter.partition}/{letter.offset}"
                when = letter.dead_at.strftime("%Y-%m-%d %H:%M:%S")
                print(
                    f"{e.id:<10} {when:<20} {letter.source:<16} {origin:<34} "
                    f"{letter.attempts:>5}  {letter.error[:100]}"
                )
            print(f"{len(entries)} dead letter(s)", file=sys.stderr)
            return 0
        if args.all == (args.id is not None):
            raise ConfigError("saga dlq replay takes one PARTITION:OFFSET or --all")
        chosen = (
            queue.entries(topic=args.topic, saga_id=args.saga_id)
            if args.all
            else [queue.entry(args.id)]
        )
        if not args.dry_run:
            queue.replay(chosen)
        verb = "would send" if args.dry_run else "sent"
        for e in chosen:
            letter = e.letter
            print(f"{verb} {e.id} -> {letter.topic} partition {letter.partition}")
        print(f"{len(chosen)} letter(s) {verb} back", file=sys.stderr)
        return 0


def _config_show(args: argparse.Namespace, config: SagaConfig) -> int:
    data = redacted(config)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, dict):
                walk(value, f"{key}.")
            else:
                shown = msgspec.json.encode(value).decode()
                print(f"{key} = {shown}    # {env_name(key)}")

    walk(data, "")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        match args.command:
            case "broker":
                return _run_broker(args, config)
            case "topics" if args.topics_command == "create":
                return _topics_create(config)
            case "topics":
                return _topics_list(args, config)
            case "config":
                return _config_show(args, config)
            case "serve":
                return _serve(args, config)
            case "run":
                return _run(args, config)
            case "start":
                return _start(args, config)
            case "show":
                return _show(args, config)
            case "dlq":
                return _dlq(args, config)
            case "status":
                return _status(args, config)
            case "history":
                return _history(args, config)
            case "top":
                return _top(args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SagaError, EventsError, ProjectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
