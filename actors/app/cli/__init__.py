"""The ``saga`` command line: the parser, assembled from one module per command
group, and :func:`main`, which runs the chosen command's handler.

- :mod:`~actors.app.cli.common`: the configuration flags, the configuration
  from them, the "no Kafka configured" check, printing;
- :mod:`~actors.app.cli.broker`: ``saga broker``, ``saga topics create|list``;
- :mod:`~actors.app.cli.run`: ``saga run``;
- :mod:`~actors.app.cli.serve`: ``saga serve``;
- :mod:`~actors.app.cli.scale`: ``saga scale``;
- :mod:`~actors.app.cli.top`: ``saga top``;
- :mod:`~actors.app.cli.sagas`: ``saga start``, ``saga show``;
- :mod:`~actors.app.cli.operate`: ``saga cancel``, ``saga retry``;
- :mod:`~actors.app.cli.status`: ``saga status``, ``saga history``;
- :mod:`~actors.app.cli.listing`: ``saga list``;
- :mod:`~actors.app.cli.reading`: ``--run`` and finding the projections under
  DATA_DIR, for every command that reads them;
- :mod:`~actors.app.cli.dlq`: ``saga dlq list|show|replay|resolve``;
- :mod:`~actors.app.cli.check`: ``saga check``, the deploy gate;
- :mod:`~actors.app.cli.backtest`: ``saga backtest``, a what-if replay;
- :mod:`~actors.app.cli.config`: ``saga config show``;
- :mod:`~actors.app.cli.bench`: ``saga bench``.

Ray is imported only by the commands that run on it (``serve``, ``run``,
``scale``), when they run: the others start without it.

:func:`main` behaves as a Unix tool does: usage and configuration errors exit
2, other failures 1, Ctrl-C 130, and output cut short by its reader (``saga
... | head``) ends it quietly with 141, what a tool killed by SIGPIPE reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from actors.app.cli import (
    backtest,
    bench,
    broker,
    check,
    config,
    dlq,
    listing,
    operate,
    run,
    sagas,
    scale,
    serve,
    status,
    top,
)
from actors.app.cli.common import (
    EPILOG,
    Handler,
    RawDescriptionFormatter,
    SagaParser,
    config_from_args,
    configuration_flags,
    print_error,
)
from actors.app.cli.reading import located_config
from actors.errors import ConfigError, PolicyError, SagaError, UsageError
from events.errors import EventsError
from projections.errors import ProjectionError

#: The command groups, in the order ``saga --help`` lists their commands.
GROUPS = (
    broker,
    run,
    serve,
    scale,
    top,
    sagas,
    operate,
    status,
    listing,
    dlq,
    check,
    backtest,
    config,
    bench,
)

#: The installed distribution whose version ``saga --version`` prints.
DISTRIBUTION: Final = "saga-orchestrator"

#: The exit code of output cut short by its reader: 128 + SIGPIPE, as a shell
#: reports a tool that SIGPIPE killed (`set -o pipefail` sees the same as with
#: `cat`), and unlike 0 it does not claim everything was written.
BROKEN_PIPE: Final = 141


def version_text(distribution: str = DISTRIBUTION) -> str:
    """``saga <version>`` of the installed distribution, or a note saying it
    is not installed (the source is run from a checkout)."""
    try:
        return f"saga {version(distribution)}"
    except PackageNotFoundError:
        return (
            f"saga (version unknown: the {distribution} distribution is not "
            "installed; `pip install -e .` installs it)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = SagaParser(
        prog="saga",
        description="Saga orchestration for the trading platform: the engine, "
        "sagas, Kafka topics, the embedded development broker and the "
        "configuration.",
        epilog=EPILOG,
        formatter_class=RawDescriptionFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    common = configuration_flags()
    for group in GROUPS:
        group.add_parsers(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        try:
            config = config_from_args(args)
            if getattr(args, "locate_projections", False):
                config = located_config(args, config)  # DATA_DIR's own, or a run's
            return handler(args, config)
        finally:
            # Written now, while a closed pipe can still be handled here.
            sys.stdout.flush()
    except (UsageError, ConfigError, PolicyError) as exc:
        print_error(exc)
        return 2
    except (SagaError, EventsError, ProjectionError) as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`| head`): nothing more to say, and nowhere to.
        # Python flushes stdout again at exit; pointed at /dev/null, that
        # flush cannot raise a second time (the Python docs' recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
