"""kafka-python clients built from the settings, and their shared handling.

The one place that knows kafka-python's option names and its quirks; the rest of
the package asks for a producer, consumer or admin client here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from kafka.errors import KafkaTimeoutError

from events.errors import BrokerUnavailableError
from events.transport.settings import KafkaSettings

Client = TypeVar("Client")


def connect(
    factory: Callable[..., Client], settings: KafkaSettings, options: dict[str, Any]
) -> Client:
    """Build a kafka-python client that never auto-creates topics; an
    unreachable cluster is a clear error after ``kafka.connect_timeout_ms``,
    not a hang."""
    try:
        client = factory(**options)
    except KafkaTimeoutError as exc:
        raise BrokerUnavailableError(
            settings.servers, settings.connect_timeout_ms, exc
        ) from exc
    # The producer keeps its cluster metadata as _metadata; consumers and the
    # admin client reach it through their connection manager.
    cluster = getattr(client, "_metadata", None)
    if cluster is None:
        cluster = getattr(getattr(client, "_manager", None), "cluster", None)
    forbid_auto_create(cluster)
    return client


class Closing(ABC):
    """Closes on leaving a ``with`` block."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
        # Never a silent jump: an offset out of range means the log lost
        # records (LogLostError). The configured policy applies only where a
        # group never committed (see KafkaEventListener).
        "auto_offset_reset": "none",
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
