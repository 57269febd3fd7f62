"""``saga top``: ``saga status``, redrawn in place every few seconds."""

from __future__ import annotations

import argparse
import sys
import time

from actors.app.cli.common import Commands
from actors.app.cli.reading import reading_flags
from actors.app.cli.status import status_report, status_text
from actors.app.config import SagaConfig


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    top = commands.add_parser(
        "top",
        parents=[common, reading_flags()],
        help="saga status, live, refreshing in the terminal",
        description="Print `saga status` every --every seconds, in place, until "
        "Ctrl-C.",
    )
    top.add_argument(
        "--every", type=float, default=2.0, metavar="S", help="refresh interval"
    )
    top.set_defaults(handler=show_top)


def show_top(args: argparse.Namespace, config: SagaConfig) -> int:
    try:
        while True:
            text = status_text(status_report(config))
            stamp = time.strftime("%H:%M:%S")
            # Clear the screen and home the cursor, then redraw.
            sys.stdout.write(
                f"\x1b[2J\x1b[H{stamp}  saga top (Ctrl-C quits)\n\n{text}\n"
            )
            sys.stdout.flush()
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0
