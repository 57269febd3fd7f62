"""``KafkaMessagePublisher``: messages onto topics, keyed by sagaId.

Idempotent producer with acks=all: a retried send is never written twice. The
key is the sagaId, so every message of one saga lands on the same partition
number of every topic, in order. Every send ends in exactly one of its two
callbacks; a broker that does not answer makes sends fail after the configured
delivery timeout instead of hanging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from events.clients import Closing, connect, producer_options
from events.errors import EventsError, PublishError
from events.messages import Message, MessageCodec
from events.settings import KafkaSettings

OnSuccess = Callable[[Message, Any], None]
OnFailure = Callable[[Message, BaseException], None]


class Delivered(Protocol):
    """What the broker acknowledged (kafka-python's ``RecordMetadata``)."""

    topic: str
    partition: int
    offset: int


class KafkaMessagePublisher(Closing):
    """Publishes :data:`~events.messages.Message` values as JSON.

    Callbacks run on the producer's I/O thread: keep them short and never
    block in them.
    """

    def __init__(
        self, settings: KafkaSettings, *, codec: MessageCodec | None = None
    ) -> None:
        self._settings = settings
        self._codec = codec or MessageCodec(settings.max_message_bytes)
        self._producer = connect(KafkaProducer, settings, producer_options(settings))

    def publish(
        self,
        topic: str,
        message: Message,
        *,
        partition: int | None = None,
        on_success: OnSuccess | None = None,
        on_failure: OnFailure | None = None,
    ) -> Any:
        """Queue one message; returns the send's future (``.get()`` waits).

        ``partition`` overrides the key's partition (see
        :func:`events.partitions.home_partition`). Raises at once for what can
        never succeed: a message over the size limit, or a topic with no
        metadata within ``producer.max_block_ms``.
        """
        value = self._codec.encode(message)
        return self.publish_raw(
            topic,
            message.saga_id,
            value,
            partition=partition,
            on_success=None if on_success is None else _bind(on_success, message),
            on_failure=None if on_failure is None else _bind(on_failure, message),
        )

    def publish_raw(
        self,
        topic: str,
        key: str | None,
        value: bytes,
        *,
        partition: int | None = None,
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> Any:
        """Queue bytes as they are: log records, dead letters, a resent original.

        A send that cannot even be queued raises :class:`EventsError`: no
        metadata within ``producer.max_block_ms``, a topic the client may not
        write, a closed producer.
        """
        try:
            future = self._producer.send(
                topic,
                value=value,
                key=None if key is None else key.encode(),
                partition=partition,
            )
        except KafkaTimeoutError as exc:
            raise EventsError(
                f"no metadata for topic {topic!r} within "
                f"{self._settings.producer.max_block_ms} ms: the topic may not exist "
                "(create it with `saga topics create`) or the broker is unreachable"
            ) from exc
        except KafkaError as exc:
            # Typed for callers outside the transport modules, which may not
            # import kafka (an authorization change surfaces here).
            raise EventsError(
                f"cannot send to {topic!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if on_success is not None:
            future.add_callback(on_success)
        if on_failure is not None:
            future.add_errback(on_failure)
        return future

    def publish_batch(
        self,
        items: Iterable[tuple[str, Message]],
        *,
        on_success: OnSuccess | None = None,
        on_failure: OnFailure | None = None,
    ) -> list[Delivered]:
        """Publish (topic, message) pairs with one flush; all acknowledged or raise.

        Returns the acknowledgements in input order. Raises
        :class:`PublishError` if any message was not acknowledged (after the
        failure callbacks ran for each).
        """
        futures = [
            self.publish(topic, message, on_success=on_success, on_failure=on_failure)
            for topic, message in items
        ]
        self.flush()
        failures = [f.exception for f in futures if f.failed()]
        if failures:
            raise PublishError(len(failures), len(futures), failures[0])
        return [f.value for f in futures]

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged or has failed."""
        limit = (
            timeout_s
            if timeout_s is not None
            # The delivery timeout bounds every send; flushing can't take longer.
            else self._settings.producer.delivery_timeout_ms / 1000 + 5
        )
        try:
            self._producer.flush(timeout=limit)
        except KafkaTimeoutError as exc:
            raise EventsError(
                f"messages still unacknowledged after {limit:g} s: is the broker "
                "reachable?"
            ) from exc

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaError as exc:
            raise EventsError(f"closing the producer failed: {exc}") from exc


def _bind(callback: Callable[[Message, Any], None], message: Message) -> Any:
    def call(result: Any) -> None:
        callback(message, result)

    return call
