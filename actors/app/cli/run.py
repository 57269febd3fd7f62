"""``saga run``: its flags, and the summary it prints (text, or JSON alone on
stdout). The run itself is :mod:`actors.app.run`."""

from __future__ import annotations

import argparse
import json
import random
import signal
from types import FrameType
from typing import TYPE_CHECKING

import msgspec

from actors.app.chaos import FAULTS
from actors.app.cli.common import (
    Commands,
    require_at_least,
    require_free_port,
    require_positive,
    require_share,
)
from actors.app.config import SagaConfig
from actors.errors import UsageError

if TYPE_CHECKING:
    from actors.app.run import Summary


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
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
        "the services' DuckDB files. Exit code 1 if the audit finds a violation. "
        "What it starts and waits for, and how many sagas have ended, go to "
        "stderr (a bar on a terminal, a line every few seconds elsewhere); "
        "stdout carries only the summary. Ray's own log goes to DATA_DIR's "
        "run folder (ray.log), and the actors' to Ray's session logs; stderr "
        "says where.",
    )
    run.add_argument(
        "--sagas", type=int, default=1_000, metavar="N", help="deposit sagas to run"
    )
    run.add_argument(
        "--chaos",
        action="store_true",
        help="strike a seeded schedule of faults while the sagas run (printed "
        "up front; each proved to fire; the audit must stay clean)",
    )
    run.add_argument(
        "--chaos-faults",
        metavar="LIST",
        help="comma-separated fault kinds for --chaos (default: all that can "
        f"run): {', '.join(FAULTS)}",
    )
    run.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object"
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        default=5_000,
        metavar="N",
        help="the load generator's window: sagas sent but not yet ended, at most",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at :PORT/metrics while the run lasts",
    )
    run.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="ADDR",
        help="the address the metrics endpoint binds (default: loopback only; "
        "0.0.0.0 for every interface)",
    )
    run.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        metavar="S",
        help="with --metrics-port: keep the platform and its endpoint up S "
        "seconds after the run, for a last scrape of its final counts "
        "(Ctrl-C ends the wait)",
    )
    run.add_argument(
        "--seed", type=int, help="workload and chaos seed (default: random)"
    )
    run.add_argument(
        "--faults",
        type=float,
        default=0.02,
        metavar="P",
        help="share of service batches failing once with an injected fault, in [0, 1)",
    )
    run.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up when no saga ended for this many seconds",
    )
    run.set_defaults(handler=saga_run)


def saga_run(args: argparse.Namespace, config: SagaConfig) -> int:
    require_at_least("--sagas", args.sagas, 1)
    require_at_least("--max-in-flight", args.max_in_flight, 1)
    require_share("--faults", args.faults)
    require_positive("--stall-timeout", args.stall_timeout)
    if args.chaos_faults is not None and not args.chaos:
        raise UsageError("--chaos-faults needs --chaos")
    if args.metrics_linger and args.metrics_port is None:
        raise UsageError("--metrics-linger needs --metrics-port")
    if args.metrics_linger < 0:
        raise UsageError(
            f"--metrics-linger must be 0 or more, not {args.metrics_linger:g}"
        )
    if args.metrics_port is not None:
        # Before the broker and Ray start: seconds of start-up, then a traceback.
        require_free_port("--metrics-port", args.metrics_addr, args.metrics_port)
    # Ray and the platform are imported here, not at the top: the other
    # commands start in a fraction of the time without them.
    from actors.app.run import Progress, RunOptions, run

    seed = args.seed if args.seed is not None else random.randrange(2**31)
    options = RunOptions(
        sagas=args.sagas,
        chaos=args.chaos,
        chaos_faults=args.chaos_faults,
        seed=seed,
        faults=args.faults,
        stall_timeout_s=args.stall_timeout,
        data_dir=config.data_dir,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        metrics_linger_s=args.metrics_linger,
        max_in_flight=args.max_in_flight,
    )

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the run as Ctrl-C does: the platform in order, then Ray.
    signal.signal(signal.SIGTERM, terminate)
    # Ray's own output goes to its log file while it runs (running_platform),
    # so stdout carries the summary alone, printed once Ray has stopped.
    with Progress() as progress:
        progress.say(
            f"seed {seed}: {args.sagas:,} deposit sagas"
            + (" with chaos" if args.chaos else "")
        )
        summary = run(config, options, progress.say, progress)
    clean = not any(summary.audit.values())
    if args.json:
        print(json.dumps(msgspec.to_builtins(summary)))
    else:
        print_summary(summary, clean)
    return 0 if clean else 1


def print_summary(summary: Summary, clean: bool) -> None:
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
    for proof in summary.chaos_proofs:
        fired = "fired" if proof["fired"] else "NOT PROVED"
        print(f"chaos        {fired}: {proof['note']}")
    if summary.data_dir:
        print(f"data         {summary.data_dir}")
