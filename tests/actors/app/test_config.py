"""Configuration: file < environment < flags, validated, secrets never shown."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from actors.app.config import SagaConfig, env_name, keys, load_config, redacted
from actors.errors import ConfigError

FILE = """
data_dir = "/var/lib/saga"
[kafka]
bootstrap_servers = ["file-1:9092", "file-2:9092"]
[kafka.producer]
linger_ms = 20
[kafka.topics]
partitions = 12
[kafka.security]
protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "orchestrator"
sasl_password = "file-secret-pw"
ssl_cafile = "/etc/ssl/ca.pem"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "saga.toml"
    path.write_text(FILE)
    return path


def test_defaults_need_no_file_and_mean_the_embedded_broker() -> None:
    config = load_config(environ={})
    assert config == SagaConfig()
    assert config.kafka.bootstrap_servers == ()
    assert config.kafka.topics.partitions == 6
    assert config.kafka.max_message_bytes == 1024 * 1024


def test_file_then_environment_then_flags(config_file: Path) -> None:
    from_file = load_config(config_file, environ={})
    assert from_file.kafka.bootstrap_servers == ("file-1:9092", "file-2:9092")
    assert from_file.kafka.producer.linger_ms == 20
    assert from_file.kafka.security.sasl_mechanism == "SCRAM-SHA-512"

    environ = {
        "SAGA_CONFIG": str(config_file),
        "SAGA_KAFKA_BOOTSTRAP_SERVERS": "env-1:9092, env-2:9093,env-3:9094",
        "SAGA_KAFKA_PRODUCER_LINGER_MS": "7",
        "SAGA_RAY_ADDRESS": "auto",
    }
    from_env = load_config(environ=environ)
    assert from_env.kafka.bootstrap_servers == (
        "env-1:9092",
        "env-2:9093",
        "env-3:9094",
    )
    assert from_env.kafka.producer.linger_ms == 7
    assert from_env.kafka.topics.partitions == 12  # untouched keys keep the file's
    assert from_env.ray.address == "auto"

    from_flags = load_config(
        environ=environ,
        overrides={"kafka.producer.linger_ms": "3", "kafka.topics.partitions": 4},
    )
    assert from_flags.kafka.producer.linger_ms == 3
    assert from_flags.kafka.topics.partitions == 4
    assert from_flags.kafka.bootstrap_servers == from_env.kafka.bootstrap_servers


def test_environment_names_are_unique_and_reach_their_key() -> None:
    names = [env_name(key) for key in keys()]
    assert len(set(names)) == len(names)
    assert env_name("kafka.consumer.group_id") == "SAGA_KAFKA_CONSUMER_GROUP_ID"
    samples = {
        "kafka.bootstrap_servers": ("a:1,b:2", ("a:1", "b:2")),
        "kafka.security.ssl_check_hostname": ("false", False),
        "kafka.producer.compression_type": ("gzip", "gzip"),
        "ray.num_cpus": ("3", 3),
        "data_dir": ("/data", "/data"),
    }
    for key, (text, expected) in samples.items():
        config = load_config(environ={env_name(key): text})
        assert functools.reduce(getattr, key.split("."), config) == expected


@pytest.mark.parametrize(
    ("environ", "overrides", "names"),
    [
        ({"SAGA_KAFKA_PRODUCER_LINGER_MS": "soon"}, {},
         ["kafka.producer.linger_ms", "SAGA_KAFKA_PRODUCER_LINGER_MS"]),
        ({}, {"kafka.topics.partitions": "0"}, ["kafka.topics.partitions", ">= 1"]),
        ({}, {"kafka.producer.lnger_ms": "3"},
         ["kafka.producer.lnger_ms", "linger_ms"]),
        ({}, {"kafka.bootstrap_servers": "no-port"},
         ["kafka.bootstrap_servers", "HOST:PORT"]),
        ({"SAGA_KAFKA_SECURITY_PROTOCOL": "TLS"}, {}, ["kafka.security.protocol"]),
        ({"SAGA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, {},
         ["kafka.security", "sasl_mechanism", "sasl_password"]),
        ({}, {"kafka.consumer.heartbeat_interval_ms": "20000"},
         ["kafka.consumer", "heartbeat_interval_ms"]),
    ],
    ids=["not-a-number", "out-of-range", "typo", "bad-server", "bad-choice",
         "sasl-incomplete", "inconsistent"],
)  # fmt: skip
def test_a_bad_value_is_one_message_naming_the_key(
    environ: dict[str, str], overrides: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ, overrides=overrides)
    for name in names:
        assert name in str(caught.value)


def test_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not TOML"):
        load_config(broken, environ={})


def test_secrets_are_never_shown(config_file: Path) -> None:
    config = load_config(
        config_file, environ={"SAGA_KAFKA_SECURITY_SSL_PASSWORD": "env-secret-pw"}
    )
    assert config.kafka.security.sasl_password == "file-secret-pw"
    for text in (repr(config), str(config), repr(config.kafka), str(redacted(config))):
        assert "file-secret-pw" not in text
        assert "env-secret-pw" not in text
    assert redacted(config)["kafka"]["security"]["sasl_password"] == "***"
    # An error about a section holding a secret does not echo the secret.
    with pytest.raises(ConfigError) as caught:
        load_config(
            config_file,
            environ={"SAGA_KAFKA_SECURITY_SASL_MECHANISM": "KERBEROS"},
        )
    assert "file-secret-pw" not in str(caught.value)


def test_a_password_file_is_read_and_its_path_kept_for_the_actors(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "sasl-password"
    secret.write_text("from-a-file-pw\n")
    environ = {
        "SAGA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SAGA_KAFKA_SECURITY_SASL_MECHANISM": "PLAIN",
        "SAGA_KAFKA_SECURITY_SASL_USERNAME": "orchestrator",
        "SAGA_KAFKA_SECURITY_SASL_PASSWORD_FILE": str(secret),
    }
    security = load_config(environ=environ).kafka.security
    assert security.sasl_password == "from-a-file-pw"
    assert security.sasl_password_file == str(secret)
    assert "from-a-file-pw" not in repr(security)
    assert redacted(load_config(environ=environ))["kafka"]["security"][
        "sasl_password_file"
    ] == str(secret)

    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ | {"SAGA_KAFKA_SECURITY_SASL_PASSWORD": "env-pw"})
    message = str(caught.value)
    assert "kafka.security.sasl_password (from environment" in message
    assert "kafka.security.sasl_password_file (from environment" in message
    assert "env-pw" not in message

    secret.unlink()
    with pytest.raises(ConfigError, match=r"kafka\.security\.sasl_password_file"):
        load_config(environ=environ)


def test_the_readmes_saga_toml_loads_as_it_reads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    after = readme.split("(`--config saga.toml` or `SAGA_CONFIG=saga.toml`):", 1)[1]
    example = after.split("```toml\n", 1)[1].split("```", 1)[0]
    # The password file it names is read at load: one here stands in for it.
    secret = tmp_path / "kafka-sasl"
    secret.write_text("readme-pw\n")
    assert '"/run/secrets/kafka-sasl"' in example
    path = tmp_path / "saga.toml"
    path.write_text(example.replace("/run/secrets/kafka-sasl", str(secret)))
    config = load_config(path, environ={})
    assert config.kafka.bootstrap_servers[0] == "kafka-1.internal:9093"
    assert config.ray.address == "auto" and config.ray.connect_timeout_s == 30
    assert config.ray.namespace == "saga"
    assert config.engine.host.fence_check_ms == 2000
