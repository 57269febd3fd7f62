"""``saga config show``: the effective configuration, secrets masked, each key
with its environment variable."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from actors.app.cli.common import Commands, print_json
from actors.app.config import SagaConfig, env_name, redacted


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser(
        "config", help="show the effective configuration"
    ).add_subparsers(metavar="ACTION", required=True)
    show = config.add_parser(
        "show",
        parents=[common],
        help="print the configuration (secrets masked)",
        description="Print the configuration after file, environment and flags "
        "are applied, with each key's environment variable name.",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=config_show)


def config_show(args: argparse.Namespace, config: SagaConfig) -> int:
    data = redacted(config)
    if args.json:
        print_json(data)
        return 0

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, dict):
                walk(value, f"{key}.")
            else:
                shown = msgspec.json.encode(value).decode()
                print(f"{key} = {shown}    # {env_name(key)}")

    walk(data, "")
    return 0
