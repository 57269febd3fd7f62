"""``saga backtest``: replay a recorded window through a changed saga policy,
offline, and compare it with the recorded policy.

Reads the published projections (a running platform's or a finished run's);
nothing is sent anywhere. See :mod:`actors.analysis` for how the replay works.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from actors.analysis.backtest import PROGRESS_EVERY
from actors.app.cli.common import Commands, RawDescriptionFormatter, print_json
from actors.app.cli.reading import reading_flags, warn_if_not_fresh
from actors.app.config import SagaConfig
from actors.errors import UsageError
from projections.location import Located

#: The changed sagas a report lists unless told (``--changed``).
LISTED = 20


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    backtest = commands.add_parser(
        "backtest",
        parents=[common, reading_flags()],
        help="replay recorded sagas through a changed policy, offline",
        description="Replay the sagas started in a recorded window through the "
        "pure decider twice: under the deployed definitions (the recorded "
        "policy, which must reproduce every recorded outcome) and under "
        "them changed by --policy (step timeouts, retry limits and backoff, "
        "compensation rules). Participants answer as recorded: each command "
        "as long after the step's first command as it was answered then; "
        "where the recording is silent, as a saga's nearby in time was "
        "(drawn with --seed). Nothing is sent anywhere. Reports the outcome "
        "mix, compensation rate, p50/p99 duration and dead letters of both, "
        "and the sagas whose outcome changes.",
        epilog="a policy file (TOML or JSON) gives only what changes:\n"
        "  [deposit.steps.process_payment]\n"
        "  timeout_ms = 30000\n"
        "  retry = { max_attempts = 5, initial_backoff_ms = 1000 }\n"
        "  [deposit.steps.process_payment.compensation]\n"
        "  timeout_ms = 20000\n"
        "  [deposit.steps.verify_user]\n"
        "  compensate = false   # no compensation: retried until answered\n"
        "examples:\n"
        "  saga backtest --policy longer-payment.toml\n"
        "  saga backtest --from 2026-11-27T14:00 --to 2026-11-27T15:00 \\\n"
        "      --policy p.toml --json --chart backtest.png",
        formatter_class=RawDescriptionFormatter,
    )
    backtest.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the policy to try (.toml or .json). Default: none, the recorded "
        "policy against itself (a check that the recording replays)",
    )
    backtest.add_argument(
        "--from",
        dest="since",
        metavar="TIME",
        help="sagas started at or after TIME: an ISO time or an age (10m, 2h)",
    )
    backtest.add_argument(
        "--to", dest="until", metavar="TIME", help="sagas started before TIME"
    )
    backtest.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seeds the draws where the recording is silent (default 1)",
    )
    backtest.add_argument(
        "--grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long past the recording's end sagas are followed (default 600)",
    )
    backtest.add_argument(
        "--changed",
        type=int,
        default=LISTED,
        metavar="N",
        help=f"changed sagas to list (default {LISTED}; all are counted)",
    )
    backtest.add_argument("--json", action="store_true", help="print JSON")
    backtest.add_argument(
        "--chart", type=Path, metavar="PNG", help="draw the comparison into PNG"
    )
    backtest.set_defaults(handler=run_backtest)


def run_backtest(args: argparse.Namespace, config: SagaConfig) -> int:
    from actors.analysis.backtest import backtest, recordings
    from actors.analysis.policy import Policy
    from actors.analysis.report import text
    from actors.core import DEFINITIONS
    from projections.history import history
    from projections.listing import FilterError, parse_moment
    from projections.reader import open_projections

    where = Located(Path(config.data_dir), args.run, None)  # main located it
    if args.changed < 0 or args.grace < 0:
        raise UsageError("--changed and --grace take 0 or more")
    policy = Policy()
    if args.policy is not None:
        try:
            policy = Policy.parse(args.policy.read_bytes(), args.policy.name)
        except OSError as exc:
            raise UsageError(f"--policy {args.policy}: {exc.strerror}") from None
    now = datetime.now().astimezone()
    try:
        since = None if args.since is None else parse_moment(args.since, now)
        until = None if args.until is None else parse_moment(args.until, now)
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    started = time.perf_counter()
    recorded = history(open_projections(where.projections))
    found = recordings(recorded.logs, recorded.letters, DEFINITIONS)
    print(
        f"read {len(found):,} sagas from {where.directory} in "
        f"{time.perf_counter() - started:.1f} s; replaying",
        file=sys.stderr,
    )
    result = backtest(
        found,
        DEFINITIONS,
        policy,
        seed=args.seed,
        start=None if since is None else round(since.timestamp() * 1000),
        end=None if until is None else round(until.timestamp() * 1000),
        grace_ms=round(args.grace * 1000),
        progress=_progress,
    )
    if args.chart is not None:
        from actors.app.backtest_chart import draw

        draw(result, args.chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    if args.json:
        print_json({**result.to_json(args.changed), "data_dir": str(where.directory)})
    else:
        print(text(result, args.changed))
    warn_if_not_fresh(where)
    return 0


def _progress(done: int, total: int) -> None:
    if total > PROGRESS_EVERY:
        print(f"replayed {done:,} of {total:,} sagas", file=sys.stderr)
