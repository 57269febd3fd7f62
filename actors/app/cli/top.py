"""``saga top``: the platform live, from the published projections and Kafka.

On a terminal it redraws in place (``rich.live``); otherwise it prints a plain
snapshot every interval, so a log gets readable lines and no escape codes.
It waits for the projections to be published rather than exiting: started
with a run, it shows what it waits for until the first publication.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from actors.app.cli.common import Commands, require_positive
from actors.app.cli.reading import reading_flags
from actors.app.cli.status import (
    ENGINE_HELP,
    add_lag,
    age_text,
    hop_lines,
    lag_lines,
    latency_text,
    owner_lines,
    projections_report,
    status_text,
    throughput_text,
)
from actors.app.config import SagaConfig
from actors.app.live import live_lines, live_owners
from actors.errors import UsageError
from events.errors import EventsError
from projections.errors import ProjectionError
from projections.location import locate

if TYPE_CHECKING:  # rich is imported when drawn: every other command starts faster
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    top = commands.add_parser(
        "top",
        parents=[common, reading_flags(locate_first=False)],
        help="the platform live: sagas in flight per step, throughput, lag",
        description="Show the sagas in flight per step, the oldest in flight, "
        "throughput, latencies, dead letters and (with Kafka configured) the "
        "consumer lag, refreshed every --every seconds until Ctrl-C. On a "
        "terminal the view redraws in place; otherwise a plain snapshot is "
        "printed each time. Waits for the projections to be published.",
    )
    top.add_argument(
        "--every", type=float, default=2.0, metavar="S", help="refresh interval"
    )
    top.add_argument(
        "--engine", metavar="NAME", help=ENGINE_HELP + " (with --ray-address)"
    )
    top.set_defaults(handler=show_top)


def show_top(args: argparse.Namespace, config: SagaConfig) -> int:
    from rich.console import Console
    from rich.live import Live

    require_positive("--every", args.every)
    console = Console()
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False) as live:
                while True:
                    shot = snapshot(config, args.run, args.engine)
                    live.update(view(shot), refresh=True)
                    time.sleep(args.every)
        while True:
            sys.stdout.write(plain(snapshot(config, args.run, args.engine)) + "\n\n")
            sys.stdout.flush()
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0


def snapshot(
    config: SagaConfig, run: str | None = None, engine: str | None = None
) -> dict[str, Any]:
    """What ``saga top`` shows now: the status report, or why there is none
    yet (``waiting``); the lag, or why Kafka did not give it (``lag_error``).
    The projections are located afresh each time (DATA_DIR's own, ``run``, or
    the newest run): a run that starts while ``top`` waits is found."""
    directory = Path(config.data_dir) / "projections"
    taken = {"at": time.strftime("%H:%M:%S"), "directory": str(directory)}
    try:
        where = locate(config.data_dir, run)
        taken["directory"] = str(where.projections)
        located = msgspec.structs.replace(config, data_dir=str(where.directory))
        report = projections_report(located)
    except ProjectionError as exc:
        return taken | {"waiting": str(exc)}
    if config.kafka.bootstrap_servers:
        try:
            add_lag(report, config)
        except EventsError as exc:
            report["lag_error"] = str(exc)
    if engine:
        try:
            report["live_owners"] = live_owners(config, engine)
        except UsageError as exc:
            report["live_error"] = str(exc)
    return taken | {"report": report}


def _header(shot: dict[str, Any]) -> str:
    return f"{shot['at']}  saga top  {shot['directory']}  (Ctrl-C quits)"


def plain(shot: dict[str, Any]) -> str:
    """A snapshot as plain lines, for a log or a pipe."""
    if "waiting" in shot:
        return (
            f"{_header(shot)}\nwaiting for projections in {shot['directory']}... "
            f"({shot['waiting']})"
        )
    report = shot["report"]
    extra = (
        [f"lag          unavailable: {report['lag_error']}"]
        if "lag_error" in report
        else []
    )
    return "\n".join([_header(shot), status_text(report), *extra])


def view(shot: dict[str, Any]) -> RenderableType:
    """A snapshot as rich renders it on a terminal."""
    from rich.console import Group
    from rich.text import Text

    header = Text(_header(shot), style="bold")
    if "waiting" in shot:
        return Group(
            header,
            Text(f"waiting for projections in {shot['directory']}...", style="yellow"),
            Text(shot["waiting"], style="dim"),
        )
    report = shot["report"]
    parts: list[RenderableType] = [header, _sagas_table(report)]
    flight = report["in_flight"]
    if flight["total"]:
        parts.append(_in_flight_table(flight))
        oldest = flight["oldest"]
        parts.append(
            Text.assemble(
                "oldest in flight  ",
                (oldest["saga_id"], "bold"),
                f" at {oldest['step'] or '(none)'}, started ",
                (age_text(oldest["age_s"]), "yellow"),
                " ago",
            )
        )
    else:
        parts.append(Text("nothing in flight", style="dim"))
    parts.append(Text(f"throughput  {throughput_text(report)}"))
    parts.append(Text(latency_text(report)))
    parts.append(_errors_line(report))
    if "lag_error" in report:
        parts.append(Text(f"lag unavailable: {report['lag_error']}", style="red"))
    elif report.get("consumer_lag"):
        parts.append(Text("\n".join(lag_lines(report["consumer_lag"]))))
    projection = report["projection"]
    parts.append(
        Text(f"projection published {projection['published_age_s']:.1f} s ago")
    )
    parts.append(Text("\n".join(hop_lines(report["hops"]))))
    owners = owner_lines(report["owners"]) + live_lines(report.get("live_owners", []))
    if "live_error" in report:
        owners.append(f"live         unavailable: {report['live_error']}")
    if owners:
        parts.append(Text("\n".join(owners)))
    return Group(*parts)


def _sagas_table(report: dict[str, Any]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table("type", "status", "sagas", box=None, title_justify="left")
    table.columns[2].justify = "right"
    colours = {"failed": "red", "rejected": "yellow", "compensated": "cyan"}
    for row in report["sagas"]:
        table.add_row(
            row["saga_type"],
            Text(row["status"], style=colours.get(row["status"], "")),
            f"{row['count']:,}",
        )
    return table


def _in_flight_table(flight: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table("in flight at step", "status", "sagas", box=None)
    table.columns[2].justify = "right"
    for row in flight["by_step"]:
        table.add_row(row["step"] or "(none)", row["status"], f"{row['count']:,}")
    return table


def _errors_line(report: dict[str, Any]) -> Text:
    """Failed sagas and dead letters (errors, red when any), and rejections
    (a business outcome)."""
    from rich.text import Text

    failed = sum(r["count"] for r in report["sagas"] if r["status"] == "failed")
    dead = report["dead_letters"]
    rejected = sum(r["count"] for r in report["sagas"] if r["status"] == "rejected")
    return Text.assemble(
        ("failed ", ""),
        (f"{failed:,}", "bold red" if failed else ""),
        ("  dead letters ", ""),
        (f"{dead:,}", "bold red" if dead else ""),
        (f"  rejected {rejected:,} (outcome, not error)", "dim"),
    )
