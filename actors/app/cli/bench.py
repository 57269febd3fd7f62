"""``saga bench``: the platform's latency on this machine (see
:mod:`actors.app.bench`), as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.app.cli.common import Commands, require_at_least, require_positive
from actors.app.config import SagaConfig
from actors.errors import UsageError

if TYPE_CHECKING:
    from actors.app.bench import BenchOptions


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="measure the platform's latency on this machine",
        description="Start the whole platform on an embedded broker of its own "
        "(as saga serve does, with the demo services) and measure: one saga "
        "at a time (each timed from the client's send to its outcome's record "
        "in saga.events), then sagas offered at fixed rates, then as fast as "
        "the platform ends them; where the single sagas' time went, hop by hop; "
        "a host's restore and its memory per in-flight saga; and the bare "
        "kafka-python ceiling. Prints a table, or JSON, and writes bench.json "
        "and a chart, bench.png.",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="fewer sagas and rates (200 single sagas; 100 and 500 sagas/s for "
        "5 s each; 3,000 at saturation and for the ceiling; 5,000 restored): "
        "about two minutes",
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
    bench.add_argument(
        "--restore",
        type=int,
        metavar="N",
        help="in-flight sagas for the restore and the memory per saga "
        "(default: 10,000)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.add_argument(
        "--out",
        metavar="DIR",
        help="where bench.json and bench.png go (default: a new folder "
        "bench<UTC time> in the data dir)",
    )
    bench.add_argument(
        "--chart",
        metavar="FILE",
        help="measure nothing: draw the chart of a saved report (a bench.json) "
        "beside it, as FILE with .png (or as bench.png in --out)",
    )
    bench.set_defaults(handler=run_bench)


#: The flags that change what is measured, which --chart does not take.
_MEASURES = ("quick", "single", "rates", "seconds", "saturation", "restore", "json")


def run_bench(args: argparse.Namespace, config: SagaConfig) -> int:
    if args.chart is not None:
        return redraw(args)
    from actors.app.bench import bench

    options = _options(args)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    out = Path(args.out) if args.out else _default_out(config)
    try:
        # Now, not after minutes of measuring: a folder it cannot write fails
        # before anything starts.
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the figures to {out}: {exc.strerror}") from None
    report = bench(config, options, say)
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(table(report), flush=True)
    write(report, out)
    say(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def redraw(args: argparse.Namespace) -> int:
    """``--chart FILE``: the chart of a saved report, nothing measured."""
    from actors.app.bench.chart import draw, read_report

    given = [
        f"--{name}" for name in _MEASURES if getattr(args, name) not in (None, False)
    ]
    if given:
        raise UsageError(
            "--chart draws a saved report and measures nothing: drop "
            + ", ".join(given)
        )
    source = Path(args.chart)
    report = read_report(source)
    png = Path(args.out) / "bench.png" if args.out else source.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    draw(report, png, str(source))
    print(f"wrote {png}", file=sys.stderr)
    return 0


def write(report: dict[str, Any], out: Path) -> None:
    """``bench.json`` (the report as ``--json`` prints it) and ``bench.png``
    (its chart) in ``out``."""
    from actors.app.bench.chart import draw

    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    draw(report, out / "bench.png")


def _default_out(config: SagaConfig) -> Path:
    """A folder of its own per run in the data dir, named by when it began
    (as saga run's are): a run never overwrites the last one's figures."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return Path(config.data_dir).expanduser() / f"bench{stamp}"


def _options(args: argparse.Namespace) -> BenchOptions:
    """The measures: the full or quick set, changed by the flags given."""
    from actors.app.bench import BenchOptions

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
    if args.restore is not None:
        require_at_least("--restore", args.restore, 1)
        changes["restore"] = args.restore
    import msgspec

    return msgspec.structs.replace(options, **changes)


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
    lines += _cpu_lines(report["saturation"].get("cpu"))
    hops = report["breakdown"]
    lines += ["", "| hop (summed over a saga's steps) | median ms |", "|---|---:|"]
    lines += [
        f"| {name} | {value:,.1f} |"
        for name, value in hops.items()
        if name not in ("total", "sagas")
    ]
    lines.append(f"| request to outcome | {hops['total']:,.1f} |")
    restored, memory = report["restore"], report["memory"]
    lines += [
        "",
        "| restore and memory (a host, in-process) | figure |",
        "|---|---:|",
        f"| restore of {restored['in_flight']:,} in-flight sagas: snapshot + "
        f"{restored['tail_records']:,}-record tail | {restored['seconds']:,.2f} s "
        f"({restored['sagas_per_s']:,.0f} sagas/s) |",
        f"| memory per in-flight saga | {memory['bytes_per_saga']:,} B |",
    ]
    return "\n".join(lines)


def _cpu_lines(cpu: dict[str, Any] | None) -> list[str]:
    """Where the CPU went at saturation (absent from reports saved before the
    bench measured it)."""
    if cpu is None:
        return []
    lines = ["", "| CPU at saturation, by part | µs per saga |", "|---|---:|"]
    lines += [f"| {part} | {us:,} |" for part, us in cpu["us_per_saga"].items()]
    lines.append(
        f"| total ({cpu['cores_busy']} cores busy) | {cpu['total_us_per_saga']:,} |"
    )
    return lines
