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
- :mod:`~actors.app.cli.status`: ``saga status``, ``saga history``;
- :mod:`~actors.app.cli.listing`: ``saga list``;
- :mod:`~actors.app.cli.reading`: ``--run`` and finding the projections under
  DATA_DIR, for every command that reads them;
- :mod:`~actors.app.cli.dlq`: ``saga dlq list|show|replay``;
- :mod:`~actors.app.cli.config`: ``saga config show``.

Ray is imported only by the commands that run on it (``serve``, ``run``,
``scale``), when they run: the others start without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from actors.app.cli import (
    broker,
    config,
    dlq,
    listing,
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
    config_from_args,
    configuration_flags,
    print_error,
)
from actors.app.cli.reading import located_config
from actors.errors import ConfigError, SagaError, UsageError
from events.errors import EventsError
from projections.errors import ProjectionError

#: The command groups, in the order ``saga --help`` lists their commands.
GROUPS = (broker, run, serve, scale, top, sagas, status, listing, dlq, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saga",
        description="Saga orchestration for the trading platform: the engine, "
        "sagas, Kafka topics, the embedded development broker and the "
        "configuration.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    common = configuration_flags()
    for group in GROUPS:
        group.add_parsers(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        config = config_from_args(args)
        if getattr(args, "locate_projections", False):
            config = located_config(args, config)  # DATA_DIR's own, or a run's
        return handler(args, config)
    except (UsageError, ConfigError) as exc:
        print_error(exc)
        return 2
    except (SagaError, EventsError, ProjectionError) as exc:
        print_error(exc)
        return 1
