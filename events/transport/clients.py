"""kafka-python clients built from the settings, and their shared handling.

The one place that knows kafka-python's option names and its quirks; the rest of
the package asks for a producer, consumer or admin client here.
"""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from kafka.errors import (
    AuthorizationError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
)
from kafka.net.compat import KafkaNetClient
from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector

from events.errors import BrokerUnavailableError, CertificateRefusedError
from events.transport.settings import SECRET_FIELDS, KafkaSettings, WithheldSecret

Client = TypeVar("Client")


def connect(
    factory: Callable[..., Client], settings: KafkaSettings, options: dict[str, Any]
) -> Client:
    """Build a kafka-python client that never auto-creates topics; an
    unreachable cluster is a clear error after ``kafka.connect_timeout_ms``,
    not a hang, and a broker certificate the client refuses one at once."""
    try:
        client = factory(**options)
    except KafkaTimeoutError as exc:
        raise BrokerUnavailableError(
            settings.servers, settings.connect_timeout_ms, exc
        ) from exc
    except _CertificateRefused as exc:
        exc.close_client()
        raise CertificateRefusedError(
            exc.server, settings.security.ssl_cafile, exc.reason
        ) from exc
    # The producer keeps its cluster metadata as _metadata; consumers and the
    # admin client reach it through their connection manager.
    cluster = getattr(client, "_metadata", None)
    if cluster is None:
        cluster = getattr(getattr(client, "_manager", None), "cluster", None)
    forbid_auto_create(cluster)
    return client


class _CertificateRefused(AuthorizationError):  # type: ignore[misc]
    """kafka-python's side of a broker certificate the client refused.

    kafka-python 3.0 wraps any TLS handshake failure in a KafkaConnectionError
    ("Handshake failed: ...", the ``ssl.SSLCertVerificationError`` left as its
    context) and, during bootstrap, backs off and tries again until
    ``bootstrap_timeout_ms``, then raises a KafkaTimeoutError that has lost the
    cause: a wrong CA looked like a broker that is down. An authorization-class
    error is what its connection manager keeps per broker, as it keeps a
    refused SASL login, and raises from the next connection attempt: the
    bootstrap stops at once with it.
    """

    def __init__(
        self, manager: KafkaConnectionManager, server: str, reason: str
    ) -> None:
        super().__init__(f"the certificate of {server} was refused: {reason}")
        self.manager = manager
        self.server = server
        self.reason = reason

    def close_client(self) -> None:
        """Close the half-built client's connections and network thread."""
        self.manager.close()
        self.manager._net.close()


class _TlsConnectionManager(KafkaConnectionManager):  # type: ignore[misc]
    """kafka-python's connection manager, reporting a refused certificate."""

    async def _build_transport(self, node: Any, timeout_at: Any = None) -> Any:
        try:
            return await super()._build_transport(node, timeout_at=timeout_at)
        except KafkaConnectionError as exc:
            refused = exc.__cause__ or exc.__context__
            if not isinstance(refused, ssl.SSLCertVerificationError):
                raise
            reason = refused.verify_message or str(refused)
            server = f"{node.host}:{node.port}"
            raise _CertificateRefused(self, server, reason) from refused

    def maybe_raise_auth_failure(self, node_id: Any) -> None:
        # Raised once, then forgotten: the next attempt connects again (after
        # the usual backoff), so a broker whose certificate is fixed is used
        # again without a restart. A refused SASL login stays as kafka-python
        # keeps it. A bootstrap server is given up on only once every one
        # refused: one broker's bad certificate must not stop a client that
        # another broker would take.
        if isinstance(self._auth_failures.get(node_id), _CertificateRefused):
            if self.cluster.is_bootstrap(node_id) and not all(
                isinstance(self._auth_failures.get(b.node_id), _CertificateRefused)
                for b in self.cluster.bootstrap_brokers()
            ):
                raise NodeNotReadyError(node_id)
            raise self._auth_failures.pop(node_id)
        super().maybe_raise_auth_failure(node_id)


class _TlsNetClient(KafkaNetClient):  # type: ignore[misc]
    """kafka-python's network client over :class:`_TlsConnectionManager`
    (given as the ``kafka_client`` option of TLS clients)."""

    def __init__(self, **configs: Any) -> None:
        net = NetworkSelector(**configs)
        manager = _TlsConnectionManager(net, **configs)
        super().__init__(net=net, manager=manager, **configs)


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
    for name in sorted(SECRET_FIELDS):
        if isinstance(getattr(sec, name), WithheldSecret):
            raise ValueError(
                f"kafka.security.{name} was withheld when these settings were "
                "pickled: read it back first (actors.runtime.passwords)"
            )
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
            kafka_client=_TlsNetClient,
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
