"""The Kafka passwords, read where a process runs: never carried in its arguments.

Pickled settings (a Ray actor's arguments) carry no password (see
``events.transport.settings.SecuritySettings``), so every actor the runtime
starts reads its passwords back with :func:`read_passwords` before anything
else: from the password file if the settings name one (``sasl_password_file``,
``ssl_password_file``), else from the environment variable the configuration
reads it from (``SAGA_KAFKA_SECURITY_SASL_PASSWORD``,
``SAGA_KAFKA_SECURITY_SSL_PASSWORD``). The configuration reads password files
through the same function. Imports no Ray: reading the configuration must not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from actors.errors import ConfigError
from events.transport.settings import (
    PASSWORD_FILES,
    SECRET_FIELDS,
    KafkaSettings,
    WithheldSecret,
)

#: Where each password is read from in the environment: the variable that sets
#: its configuration key (``actors.app.config.env_name``; a test holds them equal).
PASSWORD_ENV = {
    name: f"SAGA_KAFKA_SECURITY_{name.upper()}" for name in sorted(SECRET_FIELDS)
}


def read_password_file(path: str, key: str) -> str:
    """The password in ``path``: its content less one trailing newline."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"configuration key {key}: cannot read the password file {path}: {exc}"
        ) from None
    return text.removesuffix("\n").removesuffix("\r")


def read_passwords(
    kafka: KafkaSettings, environ: Mapping[str, str] | None = None
) -> KafkaSettings:
    """``kafka`` with every password it lacks read back.

    A password withheld by pickling is read from its file if the settings name
    one, else from its environment variable; a password given only as a file
    is read from it. Raises :class:`ConfigError` naming the variable and the
    file key to set when a withheld password is in neither place.
    """
    environ = os.environ if environ is None else environ
    security = kafka.security
    found: dict[str, str] = {}
    for name in sorted(SECRET_FIELDS):
        value = getattr(security, name)
        path = getattr(security, PASSWORD_FILES[name])
        key = f"kafka.security.{PASSWORD_FILES[name]}"
        if path is not None and (value is None or isinstance(value, WithheldSecret)):
            found[name] = read_password_file(path, key)
        elif isinstance(value, WithheldSecret):
            from_env = environ.get(PASSWORD_ENV[name])
            if not from_env:
                raise ConfigError(
                    f"kafka.security.{name} is never passed to a Ray actor, and this "
                    f"one (pid {os.getpid()}) finds it neither in its environment "
                    f"nor in a file: set {PASSWORD_ENV[name]} where the actors run "
                    f"(every Ray node), or put the password in a file there and "
                    f"set {key}"
                )
            found[name] = from_env
    if not found:
        return kafka
    return msgspec.structs.replace(
        kafka, security=msgspec.structs.replace(security, **found)
    )


def check_actors_can_read(
    kafka: KafkaSettings, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse, before any actor starts, a password that the actors of a Ray
    started by this process (they inherit its environment) could not read back:
    one written in the configuration file itself, with neither a password file
    nor its environment variable."""
    environ = os.environ if environ is None else environ
    security = kafka.security
    for name in sorted(SECRET_FIELDS):
        file_key = PASSWORD_FILES[name]
        if (
            getattr(security, name) is not None
            and getattr(security, file_key) is None
            and not environ.get(PASSWORD_ENV[name])
        ):
            raise ConfigError(
                f"kafka.security.{name} is set in the configuration file, but Ray "
                f"actors never get a password in their arguments: they read it from "
                f"{PASSWORD_ENV[name]} or from the file kafka.security.{file_key} "
                "names; move it to one of those"
            )
