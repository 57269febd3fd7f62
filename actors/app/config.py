"""The one application configuration: a frozen, validated Struct.

Loaded once at start, from (lowest to highest precedence) a TOML file, ``SAGA_``
environment variables and command-line overrides. Every key has a default, so
an empty configuration runs everything locally with the embedded broker.

Environment names are the key path in upper case joined by ``_``:
``kafka.producer.linger_ms`` is ``SAGA_KAFKA_PRODUCER_LINGER_MS``. Lists are
comma-separated (``SAGA_KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092``). Secrets
(``kafka.security.sasl_password``, ``kafka.security.ssl_password``) belong in the
environment or in a file named by ``kafka.security.sasl_password_file`` (or
``ssl_password_file``), which is read here; never on a command line, and they
are never printed. Ray actors read them again where they run
(``actors.runtime.passwords``): they are never in an actor's arguments.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from actors.engine.settings import EngineSettings
from actors.errors import ConfigError
from actors.runtime.passwords import read_passwords
from actors.runtime.settings import RaySettings
from events.transport.settings import PASSWORD_FILES, SECRET_FIELDS, KafkaSettings

Positive = Annotated[int, msgspec.Meta(gt=0)]

CONFIG_ENV = "SAGA_CONFIG"
ENV_PREFIX = "SAGA_"


def default_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the platform keeps its data unless told: ``$XDG_DATA_HOME/saga``,
    or ``~/.local/share/saga`` (the XDG default). Absolute, so every command
    agrees on it from any working directory."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative value is invalid and is ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return str(base / "saga")


class SagaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = KafkaSettings()
    ray: RaySettings = RaySettings()
    engine: EngineSettings = EngineSettings()
    #: ``saga serve`` writes here; ``saga run`` into a ``run<id>`` folder here.
    data_dir: str = msgspec.field(default_factory=default_data_dir)


def _leaves(
    info: msgspec.inspect.Type, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], msgspec.inspect.Type]]:
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            yield from _leaves(field.type, (*path, field.name))
    else:
        yield path, info


_KEYS = {path: info for path, info in _leaves(msgspec.inspect.type_info(SagaConfig))}


def env_name(key: str) -> str:
    """``kafka.producer.linger_ms`` -> ``SAGA_KAFKA_PRODUCER_LINGER_MS``."""
    return ENV_PREFIX + key.replace(".", "_").replace("-", "_").upper()


def keys() -> list[str]:
    """Every configuration key, dotted."""
    return [".".join(path) for path in _KEYS]


def _is_sequence(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_is_sequence(t) for t in info.types)
    return isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType)


def _from_text(key: str, text: str) -> Any:
    """A string value (environment, ``--set``) shaped for its key's type."""
    info = _KEYS.get(tuple(key.split(".")))
    if info is not None and _is_sequence(info):
        return [part.strip() for part in text.split(",") if part.strip()]
    if text == "" and info is not None:
        return None  # an empty variable unsets an optional key
    return text


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is a value, not a section")
        node = child
    node[leaf] = value


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{key}.")
        else:
            yield key, value


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SagaConfig:
    """Build the configuration: file, then environment, then ``overrides``.

    ``path`` defaults to ``$SAGA_CONFIG``; no file is read when neither is set.
    ``overrides`` maps dotted keys to values; strings are parsed like
    environment values. Raises :class:`ConfigError` naming the offending key
    and where its value came from.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    tree: dict[str, Any] = {}
    origin: dict[str, str] = {}

    if path is not None:
        try:
            with open(path, "rb") as handle:
                from_file = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not TOML: {exc}") from None
        for key, value in _flatten(from_file):
            _set(tree, key, value)
            origin[key] = f"file {path}"

    for path_parts in _KEYS:
        key = ".".join(path_parts)
        name = env_name(key)
        if name in environ:
            _set(tree, key, _from_text(key, environ[name]))
            origin[key] = f"environment {name}"

    for key, value in (overrides or {}).items():
        _set(tree, key, _from_text(key, value) if isinstance(value, str) else value)
        origin[key] = "command line"

    try:
        config = msgspec.convert(tree, SagaConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, origin) from None
    security = config.kafka.security
    for name, file_name in PASSWORD_FILES.items():
        if getattr(security, name) is None or getattr(security, file_name) is None:
            continue
        key, file_key = f"kafka.security.{name}", f"kafka.security.{file_name}"
        raise ConfigError(
            f"configuration keys {key} (from {origin.get(key)}) and {file_key} "
            f"(from {origin.get(file_key)}) are both set: keep one"
        )
    # Password files are read now; actors read them again where they run.
    return msgspec.structs.replace(config, kafka=read_passwords(config.kafka, environ))


_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_INDEX = re.compile(r"\[(?P<index>\d+)\]$")
_REGEX = re.compile(r"`str` matching regex .*$")
_FIELD = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")


def _config_error(
    exc: msgspec.ValidationError, origin: Mapping[str, str]
) -> ConfigError:
    text = str(exc)
    at = _AT.search(text)
    key = at.group("path") if at else ""
    reason = _AT.sub("", text)
    item = _INDEX.search(key)
    if item:
        key = _INDEX.sub("", key)
        reason = f"item {int(item.group('index')) + 1}: {reason}"
    if key == "kafka.bootstrap_servers":
        reason = _REGEX.sub("a HOST:PORT", reason)
    named = _FIELD.search(reason)
    if named:
        key = f"{key}.{named.group('name')}" if key else named.group("name")
    # A key whose own value is wrong has an origin; a section-level check
    # (e.g. SASL without a password) is reported at the section.
    source = origin.get(key)
    where = f" (from {source})" if source else ""
    known = ""
    if reason.startswith("Object contains unknown field"):
        section = key.rpartition(".")[0]
        prefix = f"{section}." if section else ""
        siblings = sorted(
            {k[len(prefix) :].split(".")[0] for k in keys() if k.startswith(prefix)}
        )
        known = f"; known keys here: {', '.join(siblings)}"
    return ConfigError(
        f"configuration key {key or '(top level)'}{where}: {reason}{known}"
    )


def redacted(config: SagaConfig) -> dict[str, Any]:
    """The configuration as plain data with every secret replaced by ``***``."""
    data: dict[str, Any] = msgspec.to_builtins(config)

    def scrub(node: dict[str, Any]) -> None:
        for name, value in node.items():
            if isinstance(value, dict):
                scrub(value)
            elif name in SECRET_FIELDS and value is not None:
                node[name] = "***"

    scrub(data)
    return data
