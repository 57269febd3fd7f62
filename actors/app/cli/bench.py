"""``saga bench``: the platform's latency on this machine (see
:mod:`actors.app.bench`), as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from actors.app.cli.common import Commands, require_at_least, require_positive
from actors.app.config import SagaConfig
from actors.errors import UsageError


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="measure the platform's latency on this machine",
        description="Start the whole platform on an embedded broker of its own "
        "(as saga serve does, with the demo services) and measure: one saga "
        "at a time (each timed from the client's send to its outcome's record "
        "in saga.events), then sagas offered at fixed rates, then where the "
        "single sagas' time went, hop by hop. Prints a table, or JSON.",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="fewer sagas and rates (200 single sagas; 100 and 500 sagas/s for "
        "5 s each; 3,000 at saturation and for the ceiling): about two minutes",
    )
    bench.add_argument("--single", type=int, metavar="N", help="single sagas to run")
    bench.add_argument(
        "--rates",
        metavar="R[,R...]",
        help="offered loads in sagas/s (default: 100,500,1000,2000)",
    )
    bench.add_argument(
        "--seconds", type=float, metavar="S", help="how long each rate is offered"
    )
    bench.add_argument(
        "--saturation",
        type=int,
        metavar="N",
        help="sagas for the throughput at saturation and the ceiling (default: 20,000)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace, config: SagaConfig) -> int:
    from actors.app.bench import BenchOptions, bench

    options = BenchOptions.quick() if args.quick else BenchOptions()
    changes: dict[str, Any] = {}
    if args.single is not None:
        require_at_least("--single", args.single, 1)
        changes["single"] = args.single
    if args.rates is not None:
        try:
            rates = tuple(float(r) for r in args.rates.split(","))
        except ValueError:
            raise UsageError(
                f"--rates takes numbers separated by commas, not {args.rates!r}"
            ) from None
        if any(r <= 0 for r in rates):
            raise UsageError(f"--rates must be above 0, not {args.rates!r}")
        changes["rates"] = rates
    if args.saturation is not None:
        require_at_least("--saturation", args.saturation, 1)
        changes["saturation"] = args.saturation
    if args.seconds is not None:
        require_positive("--seconds", args.seconds)
        changes["seconds"] = args.seconds
    import msgspec

    options = msgspec.structs.replace(options, **changes)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    report = bench(config, options, say)
    if args.json:
        print(json.dumps(report))
    else:
        print(table(report))
    return 0


def table(report: dict[str, Any]) -> str:
    """The report as the README shows it."""

    def row(label: str, measured: dict[str, Any]) -> str:
        achieved = measured.get("achieved_per_s")
        cells = [
            label,
            f"{measured['sagas']:,}",
            "-" if achieved is None else f"{achieved:,.0f}",
            *(
                "-" if measured[p] is None else f"{measured[p]:,.1f}"
                for p in ("p50", "p95", "p99")
            ),
        ]
        return "| " + " | ".join(cells) + " |"

    top = report["ceiling"]
    lines = [
        "| measure | sagas | achieved/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
        row("one saga at a time", report["single"]),
        *(
            row(f"{load['offered_per_s']:,.0f} sagas/s offered", load)
            for load in report["loads"]
        ),
        row("saturation (2,000 in flight)", report["saturation"]),
        f"| bare ceiling (kafka-python loops) | {top['sagas']:,} | "
        f"{top['sagas_per_s']:,.0f} | - | - | - |",
        "",
        "platform at saturation / ceiling: "
        + ("-" if top["ratio"] is None else f"{top['ratio']:.2f}"),
    ]
    hops = report["breakdown"]
    lines += ["", "| hop (summed over a saga's steps) | median ms |", "|---|---:|"]
    lines += [
        f"| {name} | {value:,.1f} |"
        for name, value in hops.items()
        if name not in ("total", "sagas")
    ]
    lines.append(f"| request to outcome | {hops['total']:,.1f} |")
    return "\n".join(lines)
