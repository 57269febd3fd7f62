"""``KafkaMessagePublisher``: messages onto topics, keyed by sagaId.

Idempotent producer with acks=all: a retried send is never written twice. The
key is the sagaId, so every message of one saga lands on the same partition
number of every topic, in order. A broker that does not answer makes sends fail
after the configured delivery timeout instead of hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from events.errors import EventsError, PublishError
from events.transport.clients import Closing, connect, producer_options
from events.transport.settings import KafkaSettings
from events.transport.types import Ack, Outgoing
from events.wire.latency import Histogram
from events.wire.messages import Message, MessageCodec

log = logging.getLogger(__name__)


class KafkaMessagePublisher(Closing):
    """Publishes :data:`~events.wire.messages.Message` values as JSON, and raw bytes.

    Two ways to send: :meth:`publish` queues one message and does not wait (a
    command the saga's deadline re-sends if it is lost); :meth:`send_all` and
    :meth:`publish_batch` wait until every record is acknowledged, or raise.
    After a failed :meth:`send_all` the producer is replaced on the next send:
    an idempotent producer whose sends expired is out of step with the
    broker's sequence numbers, and would fail every later send too.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        codec: MessageCodec | None = None,
        connect: bool = True,
    ) -> None:
        """Connects at once (an unreachable cluster raises here), unless
        ``connect`` is false: then on the first send."""
        self._settings = settings
        self._codec = codec or MessageCodec(settings.max_message_bytes)
        self._producer: KafkaProducer | None = self._connect() if connect else None
        #: Producers replaced after a failed send_all.
        self.rebuilds = 0
        self._connected_once = connect
        #: Queued sends that ended unacknowledged (nobody waited for them).
        self.unacknowledged = 0

    def _connect(self) -> KafkaProducer:
        return connect(KafkaProducer, self._settings, producer_options(self._settings))

    def outgoing(
        self, topic: str, message: Message, partition: int | None = None
    ) -> Outgoing:
        """``message`` as a record: encoded (size-checked), keyed by its sagaId."""
        return Outgoing(topic, message.saga_id, self._codec.encode(message), partition)

    def publish(
        self,
        topic: str,
        message: Message,
        *,
        partition: int | None = None,
        timed: Histogram | None = None,
    ) -> None:
        """Queue one message without waiting for it to be acknowledged.

        ``partition`` overrides the key's partition (see
        :func:`events.transport.partitions.home_partition`). Raises at once for
        what can never succeed: a message over the size limit, or a topic with
        no metadata within ``producer.max_block_ms``. A send that fails later
        only counts in :attr:`unacknowledged`. ``timed`` observes the seconds
        from the message handed to the producer to its acknowledgement.
        """
        record = self.outgoing(topic, message, partition)
        started = time.monotonic()
        future = self._queue(record)
        future.add_errback(self._lost)
        if timed is not None:
            future.add_callback(timed.since, started)

    def publish_raw(
        self, topic: str, key: str | None, value: bytes, *, partition: int | None = None
    ) -> None:
        """Queue bytes as they are, without waiting (see :meth:`publish`)."""
        self._queue(Outgoing(topic, key, value, partition)).add_errback(self._lost)

    def _lost(self, _: BaseException) -> None:
        self.unacknowledged += 1

    def send_all(self, records: Iterable[Outgoing]) -> list[Ack]:
        """Send the records with one flush; all acknowledged, or raise.

        Returns the acknowledgements in input order. Raises
        :class:`PublishError`, whose ``results`` say for each record its
        :class:`Ack` or its error, if any record was not acknowledged. Queueing
        stops at the first record that cannot even be queued: each further
        one would wait as long again; those records fail with the same error.
        """
        chosen = list(records)
        futures = []
        refused: BaseException | None = None
        for record in chosen:
            try:
                futures.append(self._queue(record))
            except EventsError as exc:
                refused = exc
                break
        try:
            self.flush()
        except EventsError as exc:
            refused = refused or exc
        results: list[Ack | BaseException] = []
        for future in futures:
            if future.succeeded():
                meta = future.value
                results.append(Ack(meta.topic, meta.partition, meta.offset))
            else:
                results.append(future.exception or refused or _UNFINISHED)
        results += [refused or _UNFINISHED] * (len(chosen) - len(futures))
        acks = [r for r in results if isinstance(r, Ack)]
        if len(acks) < len(chosen):
            self._renew()
            raise PublishError(results)
        return acks

    def publish_batch(self, items: Iterable[tuple[str, Message]]) -> list[Ack]:
        """Publish (topic, message) pairs; all acknowledged or raise (see
        :meth:`send_all`)."""
        return self.send_all(self.outgoing(topic, message) for topic, message in items)

    def _queue(self, record: Outgoing) -> Any:
        if self._producer is None:
            self._producer = self._connect()
            if self._connected_once:
                self.rebuilds += 1
            self._connected_once = True
        topic = record.topic
        try:
            return self._producer.send(
                topic,
                value=record.value,
                key=None if record.key is None else record.key.encode(),
                partition=record.partition,
            )
        except KafkaTimeoutError as exc:
            raise EventsError(
                f"no metadata for topic {topic!r} within "
                f"{self._settings.producer.max_block_ms} ms: the topic may not exist "
                "(create it with `saga topics create`) or the broker is unreachable"
            ) from exc
        except KafkaError as exc:
            # Typed for callers outside the transport, which may not import
            # kafka (an authorization change surfaces here).
            raise EventsError(
                f"cannot send to {topic!r}: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def _settled_s(self) -> float:
        """How long until every queued send has succeeded or failed: the
        delivery timeout bounds each one, with 5 s to spare."""
        return self._settings.producer.delivery_timeout_ms / 1000 + 5

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged or has failed."""
        if self._producer is None:
            return
        limit = timeout_s if timeout_s is not None else self._settled_s
        # kafka-python's flush waits up to its timeout for each batch in turn
        # (a batch per partition, and more when the sender drains one early),
        # so a frozen broker cost the limit once per batch: wait in short
        # slices against one deadline instead. A slice ends as soon as every
        # batch is done; it is no pause.
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EventsError(
                    f"messages still unacknowledged after {limit:g} s: is the "
                    "broker reachable?"
                )
            try:
                self._producer.flush(timeout=min(remaining, _FLUSH_SLICE_S))
                return
            except KafkaTimeoutError:
                continue

    def _renew(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # What it still holds has failed or is given up on, but kafka-python
        # closes a producer only once its batches are done (close(timeout=0)
        # raises and leaves it open; dropped, its __del__ waits a second in
        # whichever thread drops it). So it closes in the background, as its
        # batches expire within the delivery timeout.
        threading.Thread(
            target=_close_quietly,
            args=(producer, self._settled_s),
            name="closing-failed-producer",
            daemon=True,
        ).start()

    def close(self, timeout_s: float = 10.0) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=timeout_s)
        except KafkaError as exc:
            raise EventsError(f"closing the producer failed: {exc}") from exc


def _close_quietly(producer: KafkaProducer, timeout_s: float) -> None:
    try:
        producer.close(timeout=timeout_s)
    except KafkaError as exc:
        log.info("closing a failed producer: %s", exc)


#: How long one wait of :meth:`KafkaMessagePublisher.flush` lasts at most.
_FLUSH_SLICE_S = 0.25

#: The error of a record whose send neither succeeded nor failed in time.
_UNFINISHED = EventsError("not acknowledged before the flush gave up")
