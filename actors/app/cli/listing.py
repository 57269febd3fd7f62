"""``saga list``: find sagas in the published projections, newest first, a page
at a time, with their counts by status and by current step."""

from __future__ import annotations

import argparse
import shlex
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from actors.app.cli.common import Commands, RawDescriptionFormatter, print_json
from actors.app.cli.reading import reading_flags, warn_if_not_fresh
from actors.app.config import SagaConfig
from actors.errors import UsageError
from projections.location import Located

if TYPE_CHECKING:
    from projections.listing import Filters, Listing


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "list",
        parents=[common, reading_flags()],
        help="find sagas: by status, type, step, time, error text or SQL",
        description="List the sagas in DATA_DIR's published projections, newest "
        "first, a page at a time, under their counts by status and by current "
        "step (over every match, not the page). Each id is one `saga show` and "
        "`saga history` take. Filters combine (AND).",
        epilog="examples:\n"
        "  saga list --status compensated,failed --since 2h\n"
        "  saga list --step process_payment --status running\n"
        "  saga list --error 'closed' --json\n"
        '  saga list --where "retries > 0 AND duration_ms > 5000"',
        formatter_class=RawDescriptionFormatter,
    )
    listing.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATUS[,...]",
        help="running, compensating, completed, compensated, rejected, failed "
        "(repeat or comma-separate for any of them)",
    )
    listing.add_argument("--type", dest="saga_type", help="saga type, e.g. deposit")
    listing.add_argument(
        "--step",
        help="current step: the one running, being undone, or the last one of "
        "an ended saga",
    )
    listing.add_argument(
        "--since",
        metavar="TIME",
        help="started at or after TIME: an ISO time or an age (30s, 10m, 2h, 1d)",
    )
    listing.add_argument("--until", metavar="TIME", help="started before TIME")
    listing.add_argument(
        "--error",
        metavar="TEXT",
        help="TEXT (any case) in the saga's outcome reason or last step error",
    )
    listing.add_argument(
        "--where",
        metavar="SQL",
        help="a SQL condition over the sagas table's columns, e.g. "
        "\"retries > 0 AND current_step = 'deposit'\"",
    )
    listing.add_argument(
        "--limit", type=int, default=50, metavar="N", help="sagas per page"
    )
    pages = listing.add_mutually_exclusive_group()
    pages.add_argument(
        "--after",
        metavar="CURSOR",
        help="the page after CURSOR (printed at the end of each page)",
    )
    pages.add_argument("--page", type=int, metavar="N", help="page N (from 1)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_sagas)


def list_sagas(args: argparse.Namespace, config: SagaConfig) -> int:
    from projections.listing import FilterError, list_sagas
    from projections.reader import open_projections

    where = Located(Path(config.data_dir), args.run, None)  # main located it
    if args.page is not None and args.page < 1:
        raise UsageError(f"--page must be 1 or more, not {args.page}")
    try:
        filters = filters_of(args)
        db = open_projections(where.projections)
        found = list_sagas(
            db,
            filters,
            limit=args.limit,
            after=args.after,
            offset=0 if args.page is None else (args.page - 1) * args.limit,
        )
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    from projections.freshness import freshness

    if args.json:
        print_json(
            {
                "total": found.total,
                "counts": {"status": found.by_status, "step": found.by_step},
                "sagas": found.sagas,
                "next_after": found.next_after,
                "data_dir": str(where.directory),
                "projection": freshness(where.projections).to_json(),
            }
        )
    else:
        print(listing_text(found, args))
    warn_if_not_fresh(where)
    return 0


def filters_of(args: argparse.Namespace) -> Filters:
    """The filters of ``saga list`` (and of the actions taking them, ``--all``)
    from their flags; raises ``FilterError`` naming a flag it cannot read."""
    from projections.listing import Filters, parse_moment

    now = datetime.now().astimezone()
    return Filters(
        statuses=tuple(
            s.strip().lower() for value in args.status for s in value.split(",")
            if s.strip()
        ),
        saga_type=args.saga_type,
        step=args.step,
        since=None if args.since is None else parse_moment(args.since, now),
        until=None if args.until is None else parse_moment(args.until, now),
        error=args.error,
        where=args.where,
    )  # fmt: skip


def listing_text(found: Listing, args: argparse.Namespace) -> str:
    """The counts, a table of the page, and how to get the next one."""
    counts = ", ".join(f"{n:,} {status}" for status, n in found.by_status.items())
    lines = [f"{found.total:,} saga{'s' if found.total != 1 else ''}"
             + (f": {counts}" if counts else "")]  # fmt: skip
    if found.by_step:
        steps = ", ".join(f"{step} {n:,}" for step, n in found.by_step.items())
        lines.append(f"by step: {steps}")
    if found.sagas:
        lines.append("")
        width = max(len("SAGA ID"), *(len(s["saga_id"]) for s in found.sagas))
        lines.append(
            f"{'SAGA ID':<{width}}  {'TYPE':<10} {'STATUS':<12} {'STEP':<18} "
            f"{'STARTED':<19} {'DURATION':>11}  REASON / LAST ERROR"
        )
        for saga in found.sagas:
            started = datetime.fromisoformat(saga["started_at"]).astimezone()
            duration = saga["duration_ms"]
            text = saga["reason"] or saga["last_error"] or ""
            lines.append(
                f"{saga['saga_id']:<{width}}  {saga['saga_type']:<10} "
                f"{saga['status']:<12} {saga['current_step'] or '-':<18} "
                f"{started:%Y-%m-%d %H:%M:%S} "
                f"{'-' if duration is None else f'{duration:,} ms':>11}  {text[:80]}"
            )
    first = 1 + (0 if args.page is None else (args.page - 1) * args.limit)
    if found.sagas and found.next_after:
        lines.append(
            f"\nsagas {first:,}-{first + len(found.sagas) - 1:,} of "
            f"{found.total:,}, newest first; next page: {_next_command(found, args)}"
        )
    elif found.sagas and len(found.sagas) < found.total:
        lines.append(f"\nthe last page ({found.total:,} in all)")
    return "\n".join(lines)


def _next_command(found: Listing, args: argparse.Namespace) -> str:
    """This command again, for the page after this one."""
    words = ["saga", "list"]
    statuses = ",".join(args.status)
    for flag, value in (
        ("--status", statuses or None),
        ("--type", args.saga_type),
        ("--step", args.step),
        ("--since", args.since),
        ("--until", args.until),
        ("--error", args.error),
        ("--where", args.where),
        ("--limit", None if args.limit == 50 else str(args.limit)),
        ("--data-dir", args.data_dir),
        ("--run", args.run),
    ):
        if value is not None:
            words += [flag, value]
    if args.json:
        words.append("--json")
    assert found.next_after is not None
    return shlex.join([*words, "--after", found.next_after])
