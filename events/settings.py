"""Settings of the Kafka transport, and their translation to kafka-python options.

These Structs are part of the one application configuration (``actors.config``);
the transport takes them as plain values and never reads files or the
environment itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from events.messages import DEFAULT_MAX_MESSAGE_BYTES

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
HostPort = Annotated[str, msgspec.Meta(pattern=r"^[^\s:,]+:\d{1,5}$")]

#: Fields whose values are never printed or logged.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_password"})


class SecuritySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How clients authenticate and encrypt. PLAINTEXT is for development only."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
        elif self.sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism is set but protocol is {self.protocol}; "
                "use SASL_SSL or SASL_PLAINTEXT"
            )

    def __repr__(self) -> str:
        shown = {
            name: ("***" if name in SECRET_FIELDS and value is not None else value)
            for name, value in msgspec.structs.asdict(self).items()
        }
        return (
            "SecuritySettings("
            + ", ".join(f"{k}={v!r}" for k, v in shown.items())
            + ")"
        )


class ProducerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Producer tuning. Idempotence and acks=all are not settings: always on."""

    linger_ms: NonNegative = 5
    batch_size: Positive = 256 * 1024
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=5)] = 5
    request_timeout_ms: Positive = 10_000
    # Bounds how long a send may wait for a broker before it fails: no hang.
    delivery_timeout_ms: Positive = 30_000
    max_block_ms: Positive = 10_000

    def __post_init__(self) -> None:
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ValueError(
                "delivery_timeout_ms must be at least linger_ms + request_timeout_ms"
            )


class ConsumerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Consumer tuning. Offsets are always committed by hand, never automatically."""

    group_id: Annotated[str, msgspec.Meta(min_length=1)] = "saga-orchestrator"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: Positive = 2000
    fetch_min_bytes: Positive = 1
    fetch_max_wait_ms: NonNegative = 100
    max_partition_fetch_bytes: Positive = 4 * 1024 * 1024
    session_timeout_ms: Positive = 10_000
    heartbeat_interval_ms: Positive = 3_000
    max_poll_interval_ms: Positive = 300_000
    poll_timeout_ms: Positive = 200

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")


class TopicSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How topics are provisioned. Every saga topic gets the same partition count."""

    partitions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 6
    replication_factor: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1


class KafkaSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where Kafka is and how to talk to it.

    An empty ``bootstrap_servers`` means: start the embedded broker.
    """

    bootstrap_servers: tuple[HostPort, ...] = ()
    client_id: str = "saga-orchestrator"
    connect_timeout_ms: Positive = 10_000
    max_message_bytes: Positive = DEFAULT_MAX_MESSAGE_BYTES
    security: SecuritySettings = SecuritySettings()
    producer: ProducerSettings = ProducerSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    topics: TopicSettings = TopicSettings()

    @property
    def servers(self) -> str:
        return ",".join(self.bootstrap_servers)

    def with_bootstrap(self, servers: str) -> KafkaSettings:
        """A copy pointing at ``servers`` (``host:port[,host:port...]``)."""
        return msgspec.structs.replace(
            self, bootstrap_servers=tuple(s.strip() for s in servers.split(","))
        )


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Options every kafka-python client (producer, consumer, admin) shares."""
    if not settings.bootstrap_servers:
        raise ValueError("bootstrap_servers is empty: start the embedded broker first")
    sec = settings.security
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "bootstrap_timeout_ms": settings.connect_timeout_ms,
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        options.update(
            ssl_cafile=sec.ssl_cafile,
            ssl_certfile=sec.ssl_certfile,
            ssl_keyfile=sec.ssl_keyfile,
            ssl_password=sec.ssl_password,
            ssl_check_hostname=sec.ssl_check_hostname,
        )
    if sec.protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=sec.sasl_mechanism,
            sasl_plain_username=sec.sasl_username,
            sasl_plain_password=sec.sasl_password,
        )
    return options


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    p = settings.producer
    return client_options(settings) | {
        # Explicit: kafka-python only warns and turns idempotence off when an
        # implicit default conflicts; given explicitly, a conflict raises.
        "enable_idempotence": True,
        "acks": "all",
        # A typo or an empty broker must not quietly create a 4-partition topic.
        "allow_auto_create_topics": False,
        "linger_ms": p.linger_ms,
        "batch_size": p.batch_size,
        "compression_type": p.compression_type,
        "max_in_flight_requests_per_connection": p.max_in_flight,
        "request_timeout_ms": p.request_timeout_ms,
        "delivery_timeout_ms": p.delivery_timeout_ms,
        "max_block_ms": p.max_block_ms,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
    }


def consumer_options(settings: KafkaSettings, group_id: str | None) -> dict[str, Any]:
    c = settings.consumer
    return client_options(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        "auto_offset_reset": c.auto_offset_reset,
        "max_poll_records": c.max_poll_records,
        "fetch_min_bytes": c.fetch_min_bytes,
        "fetch_max_wait_ms": c.fetch_max_wait_ms,
        "max_partition_fetch_bytes": c.max_partition_fetch_bytes,
        "session_timeout_ms": c.session_timeout_ms,
        "heartbeat_interval_ms": c.heartbeat_interval_ms,
        "max_poll_interval_ms": c.max_poll_interval_ms,
    }


def admin_options(settings: KafkaSettings) -> dict[str, Any]:
    return client_options(settings) | {
        "request_timeout_ms": settings.producer.request_timeout_ms,
    }


def forbid_auto_create(cluster: Any) -> None:
    """Make a kafka-python client's metadata requests never create topics.

    kafka-python 3.0 accepts ``allow_auto_create_topics`` on the producer and
    consumer but does not hand it to the cluster metadata object that builds
    the requests, which keeps its default (True): a send to a mistyped or
    vanished topic would create it with the broker's default partition count
    and quietly remap sagaIds. Set the flag where it is actually read.
    """
    config = getattr(cluster, "config", None)
    if not isinstance(config, dict) or "allow_auto_create_topics" not in config:
        raise RuntimeError(
            "this kafka-python has no cluster.config['allow_auto_create_topics']; "
            "check that topic auto-creation is still off with it"
        )
    config["allow_auto_create_topics"] = False
