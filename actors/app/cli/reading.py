"""What the commands that read a data directory share: ``--run``, finding the
projections under DATA_DIR (:func:`projections.location.locate`), saying on
stderr which were read and how fresh they are.

``saga status``, ``history``, ``top`` and ``list`` take :func:`reading_flags`
as a parent: :func:`~actors.app.cli.main` then hands them a configuration
whose ``data_dir`` is the one located. ``saga show`` and ``saga dlq`` read the
projections only when there is no broker to ask, or when told to
(:func:`reads_projections`), and locate them themselves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from actors.app.config import SagaConfig
from actors.core import LogRecord
from projections.freshness import freshness
from projections.location import Located, locate


def reading_flags(*, locate_first: bool = True) -> argparse.ArgumentParser:
    """``--run ID``, a parent of every command that reads projections.
    ``locate_first``: ``main`` locates them before the command runs."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--run",
        metavar="ID",
        help="the run under DATA_DIR to read (`saga run` keeps each in "
        "DATA_DIR/run<id>; a unique prefix will do). Default: DATA_DIR's own "
        "projections (`saga serve`'s), else its newest run",
    )
    parent.set_defaults(locate_projections=locate_first)
    return parent


def located(args: argparse.Namespace, config: SagaConfig) -> Located:
    """The projections to read, the choice said on stderr."""
    found = locate(config.data_dir, getattr(args, "run", None))
    if found.note:
        print(found.note, file=sys.stderr)
    return found


def located_config(args: argparse.Namespace, config: SagaConfig) -> SagaConfig:
    """``config`` with ``data_dir`` the located writer's directory."""
    where = located(args, config)
    return msgspec.structs.replace(config, data_dir=str(where.directory))


def warn_if_not_fresh(where: Located) -> None:
    """``stale: ...`` or ``no writer running since ...`` on stderr, when so."""
    warning = freshness(where.projections).warning()
    if warning:
        print(warning, file=sys.stderr)


def reads_projections(args: argparse.Namespace, config: SagaConfig) -> bool:
    """Whether ``saga show``/``saga dlq`` read the projections, not Kafka: no
    broker configured, or a data directory (or run) named on the command line."""
    named = getattr(args, "data_dir", None) is not None or getattr(args, "run", None)
    return bool(named) or not config.kafka.bootstrap_servers


def open_located(args: argparse.Namespace, config: SagaConfig) -> tuple[Located, Any]:
    """The located projections and a connection to them, saying on stderr
    which were read."""
    from projections.reader import open_projections

    where = located(args, config)
    db = open_projections(where.projections)
    print(f"read from the projections in {where.directory}", file=sys.stderr)
    warn_if_not_fresh(where)
    return where, db


def archived_log(args: argparse.Namespace, config: SagaConfig) -> list[LogRecord]:
    """``args.saga_id``'s log records as the projections keep them."""
    from projections.archive import saga_log

    _, db = open_located(args, config)
    return saga_log(db, args.saga_id)
