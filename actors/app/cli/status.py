"""``saga status`` and ``saga history``: the platform and one saga as the
published projections (and, for the lag, Kafka) report them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from actors.app.cli.common import Commands, print_error, print_json
from actors.app.cli.reading import reading_flags, warn_if_not_fresh
from actors.app.config import SagaConfig
from actors.app.hops import hops_report
from actors.app.live import live_lines, live_owners
from actors.app.owners import on_node, spans
from actors.topology import PROJECTION_GROUP
from events.transport.admin import TopicAdmin


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common, reading_flags()],
        help="sagas per status, throughput, latencies, rates, owners, lag",
        description="Read the published projections under DATA_DIR/projections "
        "(while the platform runs: no lock is taken) and, when Kafka is "
        "configured, the consumer lag of every group from Kafka itself.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--engine", metavar="NAME", help=ENGINE_HELP + " (with --ray-address)"
    )
    status.set_defaults(handler=show_status)

    history = commands.add_parser(
        "history",
        parents=[common, reading_flags()],
        help="one saga's events in order, with timings, from the projections",
        description="Print a saga's events from DATA_DIR/projections, each with "
        "its time since the saga started.",
    )
    history.add_argument("saga_id", metavar="SAGA_ID")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=show_history)


#: What ``--engine`` of ``saga status`` and ``saga top`` adds.
ENGINE_HELP = (
    "also ask the running engine NAME's controller which host owns each "
    "partition, on which node, at which epoch, and which partitions a new "
    "owner is restoring now"
)


def show_status(args: argparse.Namespace, config: SagaConfig) -> int:
    report = status_report(config)
    if args.engine:
        report["live_owners"] = live_owners(config, args.engine)
    if args.json:
        print_json(report)
    else:
        print(status_text(report))
    return 0


def show_history(args: argparse.Namespace, config: SagaConfig) -> int:
    from projections.location import Located
    from projections.status import history

    events = history(_projections(config), args.saga_id)
    warn_if_not_fresh(Located(Path(config.data_dir), None, None))
    if not events:
        print_error(f"no saga {args.saga_id} in the projections")
        return 1
    if args.json:
        print_json(events)
        return 0
    for event in events:
        print(
            f"{event['seq']:>4}  +{event['since_start_ms']:>7} ms  "
            f"{event['event_type']:<24} {event['data']}"
        )
    return 0


def _projections(config: SagaConfig) -> Any:
    from projections.reader import open_projections

    return open_projections(Path(config.data_dir) / "projections")


def status_report(config: SagaConfig) -> dict[str, Any]:
    """The projections' status report, with the consumer lag when Kafka is
    configured and how long ago the projections were published."""
    report = projections_report(config)
    if config.kafka.bootstrap_servers:
        add_lag(report, config)
    return report


def projections_report(config: SagaConfig) -> dict[str, Any]:
    """What the published projections say, how long ago they were published,
    and where the time goes as the running platform last wrote (raises
    :class:`~projections.errors.ProjectionError` when nothing is published
    there)."""
    from projections.reader import published_age_s
    from projections.status import status

    report = status(_projections(config))
    directory = Path(config.data_dir) / "projections"
    from projections.freshness import freshness

    report["projection"] = {
        "published_age_s": round(published_age_s(directory), 3),
        "freshness": freshness(directory).to_json(),
    }
    report["hops"] = hops_report(directory)
    return report


def add_lag(report: dict[str, Any], config: SagaConfig) -> None:
    """The consumer lag of every group of the platform, read from Kafka, into
    ``report`` (raises :class:`~events.errors.EventsError` when Kafka does
    not answer)."""
    # Imported here: the groups' topics come from the engine, which imports
    # Ray (seconds), and a read of the projections alone needs none of it.
    from actors.app.groups import consumer_groups

    groups = consumer_groups(config.kafka.consumer.group_id)
    with TopicAdmin(config.kafka) as admin:
        lags = admin.consumer_lag(groups)
    report["consumer_lag"] = [msgspec.to_builtins(lag) for lag in lags]
    report["projection"]["lag_records"] = sum(
        lag.lag for lag in lags if lag.group == PROJECTION_GROUP
    )


def status_text(report: dict[str, Any]) -> str:
    """The report as ``saga status`` prints it, one line per fact; ``-`` for
    what there is nothing to measure by yet."""
    lines = [
        f"{row['saga_type']:<12} {row['status']:<13} {row['count']:>9,}"
        for row in report["sagas"]
    ]
    lines.append(f"throughput   {throughput_text(report)}")
    lines.extend(latency_text(report).splitlines())
    ended = report.get("ended")
    of = "" if ended is None else f" of {ended:,} ended"
    lines.append(
        f"outcomes     rejected {_share(report.get('rejection_rate'))}, "
        f"compensated {_share(report['compensation_rate'])}{of}"
    )
    lines.append(f"errors       failed {_share(report['error_rate'])}{of}")
    lines.extend(letter_lines(report))
    lines.extend(in_flight_lines(report.get("in_flight")))
    lines.extend(owner_lines(report["owners"]))
    lines.extend(live_lines(report.get("live_owners", [])))
    if "live_error" in report:
        lines.append(f"live         unavailable: {report['live_error']}")
    lines.extend(lag_lines(report.get("consumer_lag", [])))
    projection = report["projection"]
    behind = projection.get("lag_records")
    lines.append(
        f"projection   published {projection['published_age_s']:.1f} s ago"
        + ("" if behind is None else f", {behind:,} records behind")
    )
    fresh = projection.get("freshness")
    if fresh and (fresh["stale"] or fresh["final"]):
        lines.append(f"projection   {fresh['text']}")
    if "hops" in report:
        lines.extend(hop_lines(report["hops"]))
    return "\n".join(lines)


def hop_lines(hops: dict[str, Any]) -> list[str]:
    """ "Where the time goes": a line per hop the actors timed (p50, p99 and
    how many), under a line saying how fresh they are; or that one line,
    when there are none to show."""
    lines = [f"Where the time goes: {hops['text']}"]
    for row in hops["hops"]:
        per, count = row["per"], row["count"]
        if count != 1:
            per += "es" if per == "batch" else "s"
        lines.append(
            f"  {row['name']:<17} p50 {_number(row['p50_ms'], ',.1f'):>7} ms  "
            f"p99 {_number(row['p99_ms'], ',.1f'):>7} ms  {count:>11,} {per}"
        )
    return lines


def latency_text(report: dict[str, Any]) -> str:
    """A line each for the sagas' and the steps' latency quantiles."""
    lines = []
    for name in ("saga_latency_ms", "step_latency_ms"):
        values = ", ".join(f"{k} {_number(v)}" for k, v in report[name].items())
        lines.append(f"{name.removesuffix('_ms').replace('_', ' '):<12} {values} ms")
    return "\n".join(lines)


def throughput_text(report: dict[str, Any]) -> str:
    """Sagas ended per second over each window, or over the span the data
    covers when that is shorter (then the longer windows would repeat it)."""
    from projections.status import WINDOWS

    over = report.get("throughput_over_s", {})
    parts = []
    for name, rate in report["throughput_per_s"].items():
        seconds = over.get(name)
        if seconds is not None and seconds < WINDOWS[name]:
            parts.append(
                f"{_number(rate, ',.1f')}/s (over {seconds:,.1f} s, all the data)"
            )
            break
        parts.append(f"{_number(rate, ',.1f')}/s ({WINDOWS[name] // 60} min)")
    return ", ".join(parts)


def letter_lines(report: dict[str, Any]) -> list[str]:
    """The dead letters: how many, how many open and of what, the held sagas."""
    letters = report.get("letters")
    if letters is None:  # a report from before letters had states
        return [f"dead letters {report['dead_letters']:,}"]
    lines = [f"dead letters {report['dead_letters']:,}, {letters['open']:,} open"]
    lines.extend(
        f"             {row['letters']:>6,}  {row['error'][:90]}"
        for row in letters["by_error"]
    )
    held = report.get("held") or {"sagas": 0, "replies": 0}
    if held["sagas"]:
        lines.append(
            f"held         {held['sagas']:,} saga(s) behind a dead letter, "
            f"{held['replies']:,} repl(ies) held (saga dlq list)"
        )
    return lines


def in_flight_lines(flight: dict[str, Any] | None) -> list[str]:
    """The sagas in flight per step (nothing when none is), and the oldest."""
    if not flight or not flight["total"]:
        return []
    steps = ", ".join(
        f"{row['step'] or '(none)'}"
        f"{' (compensating)' if row['status'] == 'compensating' else ''} "
        f"{row['count']:,}"
        for row in flight["by_step"]
    )
    oldest = flight["oldest"]
    return [
        f"in flight    {flight['total']:,}: {steps}",
        f"oldest       {oldest['saga_id']} at {oldest['step'] or '(none)'}, "
        f"started {age_text(oldest['age_s'])} ago",
    ]


def age_text(seconds: float) -> str:
    """``seconds`` as a person reads an age: 42.0 s, 12 min, 3.5 h, 2.0 d."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def lag_lines(lags: list[dict[str, Any]]) -> list[str]:
    """A line per consumer group: records behind, and the partitions it never
    committed on (their lag counts from the log's start)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for lag in lags:
        groups.setdefault(lag["group"], []).append(lag)
    lines = []
    for group, parts in groups.items():
        never = sum(1 for p in parts if p["committed"] is None)
        note = (
            f" (never committed on {never} of {len(parts)} partitions)" if never else ""
        )
        behind = sum(p["lag"] for p in parts)
        lines.append(f"lag          {group:<24} {behind:>9,}{note}")
    return lines


def _number(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def owner_lines(owners: dict[str, Any]) -> list[str]:
    """A line per host owning partitions, and one for the records fenced;
    nothing before any claim."""
    lines = [f"owners       {owners['note']}"] if "note" in owners else []
    for host in owners["hosts"]:
        low, high = host["min_epoch"], host["max_epoch"]
        epochs = f"epoch {low}" if low == high else f"epochs {low}-{high}"
        lines.append(
            f"owners       {host['owner'] or '(claim not read)'}"
            f"{on_node(host['node'])}: "
            f"partitions {spans(host['partitions'])} ({epochs})"
        )
    fenced = owners["fenced_records"]
    if fenced:
        lines.append(
            f"fenced       {fenced:,} record{'s' if fenced > 1 else ''} of "
            "replaced owners skipped"
        )
    return lines
