"""What every ``saga`` command shares: the parser and its help format, the
configuration flags and how they become a :class:`~actors.app.config.SagaConfig`,
the handler type the group modules register, the checks of Kafka being
configured and of flag values, and printing."""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import socket
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


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with ``(default: ...)`` when the default says
    something: not for flags (``False``), unset values (``None``: the
    configuration or the command decides) or empty lists, nor when the help
    states its default in words already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class RawDescriptionFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """:class:`DefaultsFormatter` for a command whose description is laid out
    by hand (examples, lists): its lines are kept as written."""


class SagaParser(argparse.ArgumentParser):
    """The ``saga`` parser; its subcommands' parsers are of this class too
    (argparse makes them of their parent's), so every ``--help`` shows the
    defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


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
    # Their defaults come from the configuration, not from here: the help
    # names each one's key, and `saga config show` prints the values in force.
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        "configuration (each overrides its key; `saga config show` prints them)"
    )
    group.add_argument(
        "--config", metavar="FILE", help=f"TOML configuration file (or ${CONFIG_ENV})"
    )
    group.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help="Kafka brokers (kafka.bootstrap_servers); none: the embedded broker "
        "for serve and run",
    )
    group.add_argument(
        "--security-protocol",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="how to reach Kafka (kafka.security.protocol)",
    )
    group.add_argument(
        "--sasl-mechanism",
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="SASL mechanism (kafka.security.sasl_mechanism)",
    )
    group.add_argument(
        "--sasl-username",
        metavar="USER",
        help="SASL user (kafka.security.sasl_username); its password is read "
        "from the file or the environment only",
    )
    group.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="partitions of each platform topic (kafka.topics.partitions)",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster to join: the head's HOST:PORT or auto (ray.address); "
        "none: RAY_ADDRESS's, else a local Ray",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the DuckDB files and logs go (data_dir)",
    )
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


def require_at_least(flag: str, value: int, minimum: int) -> None:
    """Refuse a count below ``minimum``."""
    if value < minimum:
        raise UsageError(f"{flag} must be at least {minimum:,}, got {value:,}")


def require_positive(flag: str, value: float) -> None:
    """Refuse a duration (or another quantity) that is not above 0."""
    if not value > 0:
        raise UsageError(f"{flag} must be more than 0, got {value:g}")


def require_share(flag: str, value: float) -> None:
    """Refuse a share (a probability) outside [0, 1)."""
    if not 0 <= value < 1:
        raise UsageError(
            f"{flag} is a share, from 0 up to but not including 1 (0.02 is 2%), "
            f"got {value:g}"
        )


def require_free_port(flag: str, host: str, port: int) -> None:
    """Refuse a port out of range or in use on ``host``, before anything
    starts: binding it later fails after seconds of start-up, and a broker
    port in use would have the command talk to whatever holds it.

    The port is bound as servers bind (``SO_REUSEADDR``), so only a listener
    holding it is refused, not a connection of its that is closing."""
    if not 1 <= port <= 65535:
        raise UsageError(f"{flag} must be a port from 1 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(f"{flag}: cannot resolve {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} is in use on {host}: stop what listens there, "
                    f"or pass another {flag}"
                ) from None
            raise UsageError(
                f"{flag} {port} cannot be bound on {host}: {exc.strerror}"
            ) from None


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout; what JSON lacks (times) as text."""
    print(json.dumps(data, indent=2, default=str))


def print_error(message: object) -> None:
    """``error: <message>`` on stderr, as every command reports a failure."""
    print(f"error: {message}", file=sys.stderr)


def operator_name() -> str:
    """``user@host`` of whoever runs the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


#: More sagas or letters than this in one action ask for --yes (or a typed "yes").
CONFIRM_ABOVE: Final = 5


def confirmed(yes: bool, count: int, question: str, refusal: str) -> bool:
    """Whether to act on ``count`` sagas or letters: a few always, more with
    ``--yes`` or a typed "yes" on a terminal (asked ``question``); with no
    terminal to ask, a usage error saying ``refusal``."""
    if yes or count <= CONFIRM_ABOVE:
        return True
    if not sys.stdin.isatty():
        raise UsageError(refusal)
    return input(f"{question} Type yes to go on: ").strip().lower() == "yes"
