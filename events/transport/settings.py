"""Settings of the Kafka transport (``events.transport.clients`` turns them into
kafka-python options).

These Structs are part of the one application configuration (``actors.app.config``);
the transport takes them as plain values and never reads files or the
environment itself: a password file or a withheld password (see
:class:`SecuritySettings`) is read by the layers above, through
``actors.runtime.passwords``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from events.wire.messages import DEFAULT_MAX_MESSAGE_BYTES

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
HostPort = Annotated[str, msgspec.Meta(pattern=r"^[^\s:,]+:\d{1,5}$")]

#: Fields whose values are never printed or logged.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_password"})

#: Each secret's file setting: the file whose content (less a trailing newline)
#: is the password.
PASSWORD_FILES = {
    "sasl_password": "sasl_password_file",
    "ssl_password": "ssl_password_file",
}


class WithheldSecret(str):
    """A password left out when its :class:`SecuritySettings` was pickled (as
    Ray pickles an actor's arguments): an empty string standing for the value,
    which the process that unpickled it reads back from its environment or the
    password file (``actors.runtime.passwords``). Never usable as a password:
    :func:`events.transport.clients.client_options` refuses it."""

    field: str

    def __new__(cls, field: str) -> WithheldSecret:
        withheld = super().__new__(cls, "")
        withheld.field = field
        return withheld

    def __repr__(self) -> str:
        return f"<{self.field} withheld>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (WithheldSecret, (self.field,))


def _unpickled(fields: dict[str, Any], withheld: tuple[str, ...]) -> SecuritySettings:
    return SecuritySettings(
        **(fields | {name: WithheldSecret(name) for name in withheld})
    )


class SecuritySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How clients authenticate and encrypt. PLAINTEXT is for development only.

    A password is given as its value (``sasl_password``, ``ssl_password``) or
    as a file holding it (``sasl_password_file``, ``ssl_password_file``), which
    the configuration reads. Pickled (a Ray actor's arguments), the settings
    carry no password: each becomes a :class:`WithheldSecret`, and the actor
    reads it again where it runs, from its password file if one is set, else
    from the environment.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_password_file: str | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username")
                if getattr(self, name) is None
            ]
            if self.sasl_password is None and self.sasl_password_file is None:
                missing.append("sasl_password (or sasl_password_file)")
            if missing:
                raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
        elif self.sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism is set but protocol is {self.protocol}; "
                "use SASL_SSL or SASL_PLAINTEXT"
            )

    def __repr__(self) -> str:
        shown = {
            name: (
                value
                if name not in SECRET_FIELDS
                or value is None
                or isinstance(value, WithheldSecret)
                else "***"
            )
            for name, value in msgspec.structs.asdict(self).items()
        }
        return (
            "SecuritySettings("
            + ", ".join(f"{k}={v!r}" for k, v in shown.items())
            + ")"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled without its passwords (see the class docstring)."""
        fields = msgspec.structs.asdict(self)
        withheld = tuple(
            name for name in sorted(SECRET_FIELDS) if fields[name] is not None
        )
        for name in withheld:
            fields[name] = None
        return (_unpickled, (fields, withheld))

    def __deepcopy__(self, memo: dict[int, Any]) -> SecuritySettings:
        # Immutable; without this, deepcopy would go through __reduce__.
        return self


class ProducerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Producer tuning. Idempotence and acks=all are not settings: always on."""

    #: Every send that waits for its acknowledgement flushes; only the hosts'
    #: commands go unflushed, and a linger held each of them that long on its
    #: way to a service (15 ms of a three-step saga at 5 ms). While the sender
    #: is busy, records queue into batches anyway: at saturation 0 and 5 end
    #: the same number of sagas a second (see the README's Latency section).
    linger_ms: NonNegative = 0
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
    #: How long a log may end below an offset already read before that counts
    #: as lost: a new leader's high watermark can trail the old one's for a
    #: moment (Kafka's replica.lag.time.max.ms, 30 s by default).
    loss_grace_ms: NonNegative = 30_000

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
    #: With no ``bootstrap_servers``: clients reach the embedded broker through
    #: the relay that answers a waiting fetch when records arrive
    #: (:mod:`events.transport.longpoll`); off, each hop of a saga waits about
    #: half of ``consumer.fetch_max_wait_ms`` there.
    embedded_long_poll: bool = True

    @property
    def servers(self) -> str:
        return ",".join(self.bootstrap_servers)

    def with_bootstrap(self, servers: str) -> KafkaSettings:
        """A copy pointing at ``servers`` (``host:port[,host:port...]``)."""
        return msgspec.structs.replace(
            self, bootstrap_servers=tuple(s.strip() for s in servers.split(","))
        )
