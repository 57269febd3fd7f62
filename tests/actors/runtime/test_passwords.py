"""Passwords never travel in a Ray actor's arguments: actors read them back.

Ray pickles an actor's arguments; pickled settings carry no password, and every
actor the runtime starts reads it again, first thing, from its password file or
its environment. Tested on a real local Ray (each actor given its environment
through ``runtime_env``, as a node would have it) and in-process for every
actor class of the runtime.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors.app.config import env_name
from actors.errors import ConfigError
from actors.runtime.engine import HostOnRay, RouterOnRay
from actors.runtime.participants import ParticipantActor
from actors.runtime.passwords import (
    PASSWORD_ENV,
    check_actors_can_read,
    read_passwords,
)
from actors.runtime.projection import ProjectionActor
from events.transport.broker import free_port
from events.transport.settings import KafkaSettings, SecuritySettings, WithheldSecret

SASL_PASSWORD = "sasl-pw-5e0a9d"
KEY_PASSWORD = "key-pw-c41b77"
SASL_ENV = "SAGA_KAFKA_SECURITY_SASL_PASSWORD"
SSL_ENV = "SAGA_KAFKA_SECURITY_SSL_PASSWORD"


def kafka(**security: Any) -> KafkaSettings:
    """SASL_SSL settings at a port nobody listens on."""
    fields: dict[str, Any] = {
        "protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "orchestrator",
        "sasl_password": SASL_PASSWORD,
    }
    return KafkaSettings(
        bootstrap_servers=(f"127.0.0.1:{free_port()}",),
        connect_timeout_ms=500,
        security=SecuritySettings(**(fields | security)),
    )


def unpickled(settings: KafkaSettings) -> KafkaSettings:
    """The settings as an actor receives them."""
    back: KafkaSettings = pickle.loads(pickle.dumps(settings))
    return back


class Probe:
    """Starts as every actor of the runtime does: passwords read back first."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._received = kafka.security
        self._kafka = read_passwords(kafka)

    def received(self) -> list[str]:
        """The type of each password as the arguments brought it."""
        return [
            type(self._received.sasl_password).__name__,
            type(self._received.ssl_password).__name__,
        ]

    def passwords(self) -> tuple[str | None, str | None]:
        security = self._kafka.security
        return security.sasl_password, security.ssl_password


def on_ray(actor: type, environ: dict[str, str]) -> Any:
    """``actor`` as a Ray actor class whose process has ``environ`` set."""
    return ray.remote(actor).options(
        num_cpus=0, max_restarts=0, runtime_env={"env_vars": environ}
    )


@pytest.mark.usefixtures("ray_local")
def test_an_actor_on_ray_reads_its_passwords_from_its_environment_or_its_file(
    tmp_path: Path,
) -> None:
    settings = kafka(ssl_password=KEY_PASSWORD)
    assert SASL_PASSWORD.encode() not in ray.cloudpickle.dumps(settings)
    assert KEY_PASSWORD.encode() not in ray.cloudpickle.dumps(settings)

    from_env = on_ray(Probe, {SASL_ENV: SASL_PASSWORD, SSL_ENV: KEY_PASSWORD})
    probe = from_env.remote(settings)
    assert ray.get(probe.received.remote()) == ["WithheldSecret"] * 2
    assert ray.get(probe.passwords.remote()) == (SASL_PASSWORD, KEY_PASSWORD)
    ray.kill(probe)

    # A password file, where the settings name one, wins over the environment.
    secret = tmp_path / "sasl-password"
    secret.write_text(SASL_PASSWORD + "\n")
    on_file = msgspec.structs.replace(
        settings,
        security=msgspec.structs.replace(
            settings.security, sasl_password_file=str(secret)
        ),
    )
    from_file = on_ray(Probe, {SASL_ENV: "not-this-one", SSL_ENV: KEY_PASSWORD})
    probe = from_file.remote(on_file)
    assert ray.get(probe.passwords.remote()) == (SASL_PASSWORD, KEY_PASSWORD)
    ray.kill(probe)


@pytest.mark.usefixtures("ray_local")
def test_a_participant_actor_on_ray_starts_only_with_its_password_in_reach(
    tmp_path: Path,
) -> None:
    settings = kafka()
    path = str(tmp_path / "user.duckdb")
    without = on_ray(ParticipantActor, {SASL_ENV: ""}).remote(settings, "user", path)
    with pytest.raises(ray.exceptions.RayActorError) as caught:
        ray.get(without.pid.remote(), timeout=60)
    message = str(caught.value)
    assert SASL_ENV in message and "kafka.security.sasl_password_file" in message
    assert SASL_PASSWORD not in message

    given = on_ray(ParticipantActor, {SASL_ENV: SASL_PASSWORD})
    actor = given.remote(settings, "user", path)
    try:
        assert ray.get(actor.pid.remote(), timeout=60) > 0
    finally:
        ray.kill(actor)


def test_every_actor_of_the_runtime_reads_its_passwords_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SASL_ENV, raising=False)
    received = unpickled(kafka())
    starts = {
        "host": lambda: HostOnRay(received, 1),
        "router": lambda: RouterOnRay(received, "saga-controller", 1, []),
        "participant": lambda: ParticipantActor(
            received, "user", str(tmp_path / "user.duckdb")
        ),
        "projection": lambda: ProjectionActor(
            received, str(tmp_path / "p.duckdb"), str(tmp_path / "p")
        ),
    }
    for name, start in starts.items():
        with pytest.raises(ConfigError, match=f"set {SASL_ENV} where") as caught:
            start()
        assert "kafka.security.sasl_password_file" in str(caught.value), name
    assert not list(tmp_path.iterdir()), "an actor did work before its passwords"


def test_read_passwords(tmp_path: Path) -> None:
    settings = kafka(ssl_password=KEY_PASSWORD)
    received = unpickled(settings)
    assert isinstance(received.security.sasl_password, WithheldSecret)
    environ = {SASL_ENV: SASL_PASSWORD, SSL_ENV: KEY_PASSWORD}
    assert read_passwords(received, environ) == settings
    # Nothing withheld, no file: the same settings.
    assert read_passwords(settings, {}) is settings
    # An empty variable is no password.
    with pytest.raises(ConfigError, match=SSL_ENV) as caught:
        read_passwords(received, {SASL_ENV: SASL_PASSWORD, SSL_ENV: ""})
    assert "kafka.security.ssl_password_file" in str(caught.value)

    secret = tmp_path / "password"
    secret.write_text(f"{SASL_PASSWORD}\r\n")
    on_file = SecuritySettings(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="orchestrator",
        sasl_password_file=str(secret),
    )
    given = msgspec.structs.replace(settings, security=on_file)
    assert read_passwords(given, {}).security.sasl_password == SASL_PASSWORD
    secret.write_text(f" {SASL_PASSWORD} \n\n")  # one newline less, nothing else
    assert read_passwords(given, {}).security.sasl_password == f" {SASL_PASSWORD} \n"

    missing = tmp_path / "nowhere"
    gone = msgspec.structs.replace(
        given,
        security=msgspec.structs.replace(on_file, sasl_password_file=str(missing)),
    )
    with pytest.raises(
        ConfigError, match=r"kafka\.security\.sasl_password_file"
    ) as err:
        read_passwords(gone, {})
    assert str(missing) in str(err.value)


def test_the_variables_are_the_configurations() -> None:
    configured = {
        name: env_name(f"kafka.security.{name}")
        for name in ("sasl_password", "ssl_password")
    }
    assert configured == PASSWORD_ENV
    assert configured == {"sasl_password": SASL_ENV, "ssl_password": SSL_ENV}


def test_a_password_only_in_the_configuration_file_is_refused_before_a_local_ray(
    tmp_path: Path,
) -> None:
    inline = kafka()
    with pytest.raises(ConfigError, match=f"from {SASL_ENV} or from the file") as err:
        check_actors_can_read(inline, {})
    assert SASL_PASSWORD not in str(err.value)
    check_actors_can_read(inline, {SASL_ENV: SASL_PASSWORD})
    on_file = msgspec.structs.replace(
        inline,
        security=msgspec.structs.replace(
            inline.security, sasl_password_file=str(tmp_path / "pw")
        ),
    )
    check_actors_can_read(on_file, {})
