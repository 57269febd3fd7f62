"""What every ``saga`` command shares: the configuration flags and how they
become a :class:`~actors.app.config.SagaConfig`, the handler type the group
modules register, the check that Kafka is configured, and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from actors.app.config import CONFIG_ENV, SagaConfig, env_name, load_config
from actors.errors import ConfigError, UsageError
from events.transport.settings import SECRET_FIELDS

#: Where a group module adds its commands (``add_parsers(commands, common)``).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: What a command runs: its parsed arguments and the configuration in, the exit
#: code out. Each group module sets it on its parsers as ``handler``.
Handler = Callable[[argparse.Namespace, SagaConfig], int]

EPILOG: Final = f"""\
configuration (lowest to highest precedence): a TOML file (--config or ${CONFIG_ENV}),
SAGA_* environment variables (e.g. {env_name("kafka.bootstrap_servers")}), then flags.
`saga config show` prints the result and lists every key; passwords are only read
from the file or the environment and are never printed.
"""

#: The dedicated configuration flags (argparse attribute) and the key each sets.
FLAG_KEYS: Final = {
    "bootstrap_servers": "kafka.bootstrap_servers",
    "security_protocol": "kafka.security.protocol",
    "sasl_mechanism": "kafka.security.sasl_mechanism",
    "sasl_username": "kafka.security.sasl_username",
    "partitions": "kafka.topics.partitions",
    "ray_address": "ray.address",
    "data_dir": "data_dir",
}


def configuration_flags() -> argparse.ArgumentParser:
    """The configuration flags, a parent of every command that reads it."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE", help="TOML configuration file")
    group.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help="Kafka brokers (kafka.bootstrap_servers); empty means embedded",
    )
    group.add_argument(
        "--security-protocol",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="kafka.security.protocol",
    )
    group.add_argument(
        "--sasl-mechanism",
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="kafka.security.sasl_mechanism",
    )
    group.add_argument("--sasl-username", help="kafka.security.sasl_username")
    group.add_argument(
        "--partitions", type=int, metavar="N", help="kafka.topics.partitions"
    )
    group.add_argument("--ray-address", help="ray.address")
    group.add_argument("--data-dir", metavar="DIR", help="data_dir")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any configuration key, e.g. --set kafka.producer.linger_ms=10",
    )
    return common


def config_from_args(args: argparse.Namespace) -> SagaConfig:
    """The configuration: file and environment, then ``--set``, then the flags."""
    overrides: dict[str, Any] = {}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        key = key.strip()
        if key.rsplit(".", 1)[-1] in SECRET_FIELDS:
            raise UsageError(
                f"--set {key}: a password is never taken from the command line "
                f"(every user of the machine can read it); put it in {env_name(key)} "
                f"or in a file named by {key}_file"
            )
        overrides[key] = value
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides=overrides)


def require_kafka(config: SagaConfig) -> None:
    """Refuse a command that needs a cluster when none is configured."""
    if not config.kafka.bootstrap_servers:
        raise ConfigError(
            "no Kafka configured: pass --bootstrap-servers HOST:PORT, set "
            f"{env_name('kafka.bootstrap_servers')}, or start one with `saga broker`"
        )


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout; what JSON lacks (times) as text."""
    print(json.dumps(data, indent=2, default=str))


def print_error(message: object) -> None:
    """``error: <message>`` on stderr, as every command reports a failure."""
    print(f"error: {message}", file=sys.stderr)
