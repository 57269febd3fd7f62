"""Security settings through to kafka-python, and passwords kept out of sight.

The SASL and TLS settings reach kafka-python under its own option names, and
the producer and consumer built from them (their connection manager, which
makes every connection) really carry them. A password is never pickled (Ray
pickles an actor's arguments), printed, or put in an error or a dead letter.
"""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from kafka import KafkaConsumer, KafkaProducer

from events.errors import BrokerUnavailableError
from events.transport.broker import free_port
from events.transport.clients import (
    client_options,
    connect,
    consumer_options,
    producer_options,
)
from events.transport.settings import KafkaSettings, SecuritySettings, WithheldSecret
from events.wire.dead_letters import DeadLetter, DeadLetterCodec

SASL_PASSWORD = "sasl-pw-7d1f0c"
KEY_PASSWORD = "key-pw-93be2a"

SECURITY = {
    "SASL_SSL": SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="orchestrator",
        sasl_password=SASL_PASSWORD,
        ssl_cafile="/etc/kafka/ca.pem",
        ssl_certfile="/etc/kafka/client.pem",
        ssl_keyfile="/etc/kafka/client.key",
        ssl_password=KEY_PASSWORD,
        ssl_check_hostname=False,
    ),
    "SASL_PLAINTEXT": SecuritySettings(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="orchestrator",
        sasl_password=SASL_PASSWORD,
    ),
    "SSL": SecuritySettings(
        protocol="SSL",
        ssl_cafile="/etc/kafka/ca.pem",
        ssl_certfile="/etc/kafka/client.pem",
        ssl_keyfile="/etc/kafka/client.key",
        ssl_password=KEY_PASSWORD,
    ),
}

SASL_OPTIONS = {
    "sasl_plain_username": "orchestrator",
    "sasl_plain_password": SASL_PASSWORD,
}
SSL_OPTIONS = {
    "ssl_cafile": "/etc/kafka/ca.pem",
    "ssl_certfile": "/etc/kafka/client.pem",
    "ssl_keyfile": "/etc/kafka/client.key",
    "ssl_password": KEY_PASSWORD,
}

#: What each protocol's settings must become, in kafka-python's names.
EXPECTED: dict[str, dict[str, Any]] = {
    "SASL_SSL": {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        **SASL_OPTIONS,
        **SSL_OPTIONS,
        "ssl_check_hostname": False,
    },
    "SASL_PLAINTEXT": {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        **SASL_OPTIONS,
    },
    "SSL": {"security_protocol": "SSL", **SSL_OPTIONS, "ssl_check_hostname": True},
}


def settings_with(security: SecuritySettings, server: str = "kafka-1:9093") -> Any:
    return KafkaSettings(bootstrap_servers=(server,), security=security)


@pytest.mark.parametrize("protocol", sorted(SECURITY))
def test_client_options_name_every_security_setting_as_kafka_python_does(
    protocol: str,
) -> None:
    options = client_options(settings_with(SECURITY[protocol]))
    for name, value in EXPECTED[protocol].items():
        assert options[name] == value, name
    security_options = {
        k for k in options if k.startswith(("sasl_", "ssl_", "security_"))
    }
    assert security_options == set(EXPECTED[protocol])
    # TLS clients get the network client that reports a refused certificate.
    assert ("kafka_client" in options) == ("SSL" in protocol)


def test_plaintext_passes_no_security_options() -> None:
    options = client_options(settings_with(SecuritySettings()))
    assert options["security_protocol"] == "PLAINTEXT"
    assert not [k for k in options if k.startswith(("sasl_", "ssl_"))]
    assert "kafka_client" not in options


@pytest.mark.parametrize("protocol", sorted(SECURITY))
def test_built_producer_and_consumer_carry_the_settings(protocol: str) -> None:
    """Built for real (given an api_version, they skip the bootstrap, so no
    broker is needed): the options reach each client's config and the
    connection manager that builds every connection from its own config."""
    settings = settings_with(SECURITY[protocol], f"127.0.0.1:{free_port()}")
    no_bootstrap = {"api_version": (3, 9)}
    producer = KafkaProducer(**producer_options(settings) | no_bootstrap)
    try:
        for config in (producer.config, producer._sender._client._manager.config):
            for name, value in EXPECTED[protocol].items():
                assert config[name] == value, name
    finally:
        producer.close(timeout=1)
    consumer = KafkaConsumer(**consumer_options(settings, "g") | no_bootstrap)
    try:
        for config in (consumer.config, consumer._manager.config):
            for name, value in EXPECTED[protocol].items():
                assert config[name] == value, name
    finally:
        consumer.close(autocommit=False)


def test_a_password_can_be_given_as_a_file_instead() -> None:
    on_file = SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="orchestrator",
        sasl_password_file="/run/secrets/kafka",
    )
    assert on_file.sasl_password is None
    with pytest.raises(ValueError, match="sasl_password \\(or sasl_password_file\\)"):
        SecuritySettings(
            protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="orchestrator"
        )


def test_pickled_settings_carry_no_password() -> None:
    settings = settings_with(SECURITY["SASL_SSL"])
    data = pickle.dumps(settings)
    assert SASL_PASSWORD.encode() not in data
    assert KEY_PASSWORD.encode() not in data
    back = pickle.loads(data)
    security = back.security
    assert isinstance(security.sasl_password, WithheldSecret)
    assert isinstance(security.ssl_password, WithheldSecret)
    assert (security.sasl_password.field, security.ssl_password.field) == (
        "sasl_password",
        "ssl_password",
    )
    # Everything else came through.
    assert msgspec.structs.replace(
        security, sasl_password=SASL_PASSWORD, ssl_password=KEY_PASSWORD
    ) == (settings.security)
    assert back.bootstrap_servers == settings.bootstrap_servers
    # Pickled again (an actor handing them on), still nothing to find.
    assert SASL_PASSWORD.encode() not in pickle.dumps(back)
    assert pickle.loads(pickle.dumps(back)).security.sasl_password.field == (
        "sasl_password"
    )
    # A withheld password is never used as one: it must be read back first.
    with pytest.raises(ValueError, match=r"sasl_password was withheld.*read it back"):
        client_options(back)
    # Unset passwords stay unset; copies in-process keep them.
    plain = pickle.loads(pickle.dumps(settings_with(SECURITY["SASL_PLAINTEXT"])))
    assert plain.security.ssl_password is None
    assert copy.deepcopy(settings).security.sasl_password == SASL_PASSWORD
    assert copy.copy(settings).security.ssl_password == KEY_PASSWORD


def test_passwords_are_never_printed() -> None:
    settings = settings_with(SECURITY["SASL_SSL"])
    withheld = pickle.loads(pickle.dumps(settings))
    for text in (repr(settings), str(settings), repr(withheld), f"{settings!r}"):
        assert SASL_PASSWORD not in text
        assert KEY_PASSWORD not in text
    assert "sasl_password='***'" in repr(settings.security)
    assert "sasl_password=<sasl_password withheld>" in repr(withheld.security)


def test_errors_logs_and_dead_letters_do_not_carry_passwords(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that cannot connect with SASL settings: its error, with the
    whole traceback, and everything logged on the way name no password; nor
    does a dead letter whose error names the settings."""
    settings = msgspec.structs.replace(
        settings_with(SECURITY["SASL_PLAINTEXT"], f"127.0.0.1:{free_port()}"),
        connect_timeout_ms=300,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(BrokerUnavailableError) as err:
        connect(KafkaProducer, settings, producer_options(settings))
    texts = [
        str(err.value),
        "".join(traceback.format_exception(err.value)),
        caplog.text,
    ]
    letter = DeadLetter.of(
        ("user.commands.verify", 0, 7),
        "saga-1",
        b"{}",
        error=f"internal error: {ValueError(settings)!r}",
        source="test",
        at=datetime(2026, 11, 25, tzinfo=UTC),
        max_message_bytes=settings.max_message_bytes,
    )
    texts.append(DeadLetterCodec().encode(letter).decode())
    for text in texts:
        assert SASL_PASSWORD not in text
