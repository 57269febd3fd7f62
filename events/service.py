"""``CommandService``: the listener machinery of a participant service.

A service instance is a member of its own consumer group over its command
topics (more instances share the group). For each polled batch it:

1. dead-letters at once what cannot be decoded, is not a command, or asks to
   be answered anywhere but the events twin of its commands topic or a topic
   of the service's ``reply_topics`` allow-list (never the orchestrator's own
   ``saga.*`` topics), without handling it;
2. hands the commands to the handler as one batch, retried with exponential
   backoff and jitter up to ``max_attempts`` (a transient fault passes); if
   the batch keeps failing, it handles each command alone, retried the same
   way, and dead-letters (with origin, error and attempt count) only the one
   that keeps failing;
3. publishes each reply (its ``commandId`` set to the command's messageId when
   the handler left it empty) on the same partition number, flushes, and
   checks every send's future: what failed is sent again with backoff, up to
   ``send_attempts`` times, each time on a new producer (a failed send may
   leave the old one fenced, with a bumped epoch or without authorization);
4. reports done only the records whose reply or dead letter the broker
   acknowledged, so the listener commits their offsets and rewinds to the
   first one that was not: it comes back on the next poll.

A handler that raises :class:`~events.errors.ServiceUnavailableError` (its
database or disk failing) opens the circuit breaker: nothing is dead-lettered,
nothing is reported done (the whole batch comes back), and the service waits
with capped exponential backoff, interruptible by :meth:`stop`, before the
next poll tries again; the first batch handled closes the breaker. Each wait is
bounded well below ``max_poll_interval_ms``, so the member stays in its group.

Nothing is lost (an offset is committed only after its message was answered
or dead-lettered) and a poison message never stalls the partition. A record
redelivered after a failed send is handled again: the handler's idempotency
answers it with the stored reply, and a dead letter may be sent twice. A real
service outside this repository uses this class with its own handler.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

import msgspec

from events.errors import (
    InvalidTopicNameError,
    MessageTooLargeError,
    PublishError,
    ServiceUnavailableError,
)
from events.transport.clients import Closing
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing
from events.wire.backoff import Backoff, backoff_ms
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.latency import Histogram, HistogramCounts, snapshot
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import SAGA_DLQ, Direction, parse_topic

log = logging.getLogger(__name__)

#: The hops of a saga's path a service times (:data:`events.wire.latency.HOPS`;
#: ``duckdb_commit`` is the handler's batch, the demo services' DuckDB commit).
SERVICE_HOPS = ("participant_poll", "duckdb_commit", "reply_publish")

#: Answers a batch of commands: one reply per command, in the same order.
BatchHandler = Callable[[Sequence[CommandMessage]], list[EventMessage]]


class RetrySettings(Backoff, frozen=True, forbid_unknown_fields=True):
    """How a failing handler is retried before its message is dead-lettered,
    how often unacknowledged sends are tried again, and how long the service
    pauses while its handler reports itself unavailable."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5
    initial_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 50
    max_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 2_000
    jitter: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    #: Sends of a batch's replies and dead letters before the batch is put
    #: back for redelivery (each waits up to ``delivery_timeout_ms``).
    send_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    #: The breaker's first pause, doubled (``multiplier``) per batch refused.
    unavailable_initial_ms: Annotated[int, msgspec.Meta(ge=0)] = 500
    unavailable_max_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000

    def backoff_s(self, attempt: int, draw: float) -> float:
        return self.wait_ms(attempt, draw) / 1000

    def pause_s(self, trips: int, draw: float) -> float:
        """The breaker's pause after ``trips`` unavailable batches in a row."""
        wait = backoff_ms(
            trips,
            self.unavailable_initial_ms,
            self.multiplier,
            self.unavailable_max_ms,
            self.jitter,
            draw,
        )
        return wait / 1000


class ServiceStats(msgspec.Struct, frozen=True):
    #: Records reported done: answered or dead-lettered, and acknowledged.
    handled: int
    replies: int
    retries: int
    dead_letters: int
    #: Partitions this member holds: 0 until it has joined its group.
    assigned: int
    consumed: dict[str, int] = {}
    produced: dict[str, int] = {}
    #: Replies and dead letters the broker did not acknowledge, per attempt.
    failed_sends: int = 0
    #: Producers replaced after a failed send.
    producer_rebuilds: int = 0
    #: Batches put back because the handler reported itself unavailable.
    unavailable: int = 0
    #: True from an unavailable batch until the next batch is handled.
    breaker_open: bool = False
    #: The service's hops of a saga's path (:data:`events.wire.latency.HOPS`):
    #: a command's Kafka timestamp to its batch's start, the handler's batch,
    #: the replies' send to their acknowledgement.
    hops: dict[str, HistogramCounts] = {}


class _Refused(Exception):
    """A command that must not be handled: the reason goes in its dead letter."""


class _Command(NamedTuple):
    delivery: Delivery
    command: CommandMessage
    reply_topic: str


class _Output(NamedTuple):
    """What answers one record: a reply, or a dead letter on ``saga.dlq``
    (then ``error`` says why)."""

    delivery: Delivery
    topic: str
    key: str | None
    value: bytes
    error: str | None = None


class CommandService(Closing):
    """Runs ``handler`` over ``topics`` as consumer group ``group_id``.

    ``reply_topics`` are events topics a command may name as its
    ``replyTopic`` besides the events twin of the topic it came on.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        name: str,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        group_id: str,
        retry: RetrySettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        reply_topics: Sequence[str] = (),
    ) -> None:
        for topic in reply_topics:
            if not _is_events_topic(topic):
                raise ValueError(
                    f"reply_topics may name only service events topics "
                    f"(<service>.events.<action>), not {topic!r}: the saga.* "
                    "topics belong to the orchestrator"
                )
        self.name = name
        self._kafka = kafka
        self._handler = handler
        self._retry = retry or RetrySettings()
        self._sleep = sleep
        self._reply_topics = frozenset(reply_topics)
        self._random = random.Random()
        self._codec = MessageCodec(kafka.max_message_bytes)
        self._letters = DeadLetterCodec()
        # Half the poll interval: a breaker pause never costs the membership.
        self._max_pause_s = kafka.consumer.max_poll_interval_ms / 2000
        self._publisher = KafkaMessagePublisher(kafka)
        self._listener = KafkaEventListener(
            kafka, topics, self._handle, group_id=group_id
        )
        self._counts = {
            "handled": 0,
            "replies": 0,
            "retries": 0,
            "dead_letters": 0,
            "failed_sends": 0,
            "unavailable": 0,
        }
        #: Unavailable batches in a row; the breaker is open while above 0.
        self._trips = 0
        self._assigned: set[TP] = set()
        self._consumed: dict[str, int] = {}
        self._produced: dict[str, int] = {}
        self._hops = {hop: Histogram() for hop in SERVICE_HOPS}
        self._stopping = threading.Event()

    # -- driving it --------------------------------------------------------

    def poll_once(self) -> int:
        handled = self._listener.poll_once()
        self._assigned = self._listener.assignment()
        return handled

    def run(self) -> None:
        """Poll, handle and commit until :meth:`stop` is called."""
        while not self._stopping.is_set():
            self.poll_once()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (cutting a breaker
        pause short); thread-safe."""
        self._stopping.set()

    def wait_for_assignment(self, timeout_s: float = 30.0) -> None:
        self._listener.wait_for_assignment(timeout_s)

    def stats(self) -> ServiceStats:
        return ServiceStats(
            **self._counts,
            producer_rebuilds=self._publisher.rebuilds,
            assigned=len(self._assigned),
            consumed=dict(self._consumed),
            produced=dict(self._produced),
            breaker_open=self._trips > 0,
            hops=snapshot(self._hops),
        )

    def close(self) -> None:
        try:
            self._listener.close()
        finally:
            self._publisher.close()

    # -- one batch -----------------------------------------------------------

    def _handle(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self._hops["participant_poll"].ages(d.timestamp for d in deliveries)
        outputs: dict[tuple[str, int, int], _Output] = {}
        commands: list[_Command] = []
        for delivery in deliveries:
            if delivery.error is not None:
                outputs[delivery.position] = self._dead(
                    delivery, str(delivery.error), 1
                )
            elif not isinstance(delivery.message, CommandMessage):
                outputs[delivery.position] = self._dead(
                    delivery, f"{delivery.topic} takes commands, got an event", 1
                )
            else:
                try:
                    topic = self._reply_topic(delivery, delivery.message)
                except _Refused as refused:
                    outputs[delivery.position] = self._dead(delivery, str(refused), 1)
                    continue
                commands.append(_Command(delivery, delivery.message, topic))
        if commands:
            try:
                started = time.monotonic()
                answered = self._answers(commands)
                self._hops["duckdb_commit"].since(started)
            except ServiceUnavailableError as exc:
                self._pause(exc, len(deliveries))
                return []
            if self._trips:
                log.warning("%s: handler available again, breaker closed", self.name)
                self._trips = 0
            for output in answered:
                outputs[output.delivery.position] = output
        started = time.monotonic()
        done = self._send([outputs[delivery.position] for delivery in deliveries])
        self._hops["reply_publish"].since(started)
        for output in done:
            self._count(output)
        return [output.delivery for output in done]

    def _reply_topic(self, delivery: Delivery, command: CommandMessage) -> str:
        """Where the command's reply goes: the events twin of its topic, or a
        topic of the allow-list. Anything else, above all the orchestrator's
        own topics, would let a sender write into logs it does not own."""
        try:
            twin: str | None = parse_topic(delivery.topic).reply.name
        except InvalidTopicNameError:
            twin = None
        asked = command.metadata.get("replyTopic") or twin
        if asked is not None and (asked == twin or asked in self._reply_topics):
            return asked
        allowed = ", ".join(sorted(self._reply_topics)) or "none"
        raise _Refused(
            f"replyTopic {asked!r} refused: a command on {delivery.topic} is "
            f"answered only on its events twin ({twin}) or a topic of the "
            f"{self.name} allow-list ({allowed}); saga.* topics belong to the "
            "orchestrator"
        )

    def _answers(self, commands: list[_Command]) -> list[_Output]:
        """The whole batch, retried as a batch (a transient fault passes);
        if it keeps failing, each command alone, so only the one that keeps
        failing is dead-lettered. :class:`ServiceUnavailableError` is not
        retried here: it goes up and the whole batch is put back."""
        batch = [c.command for c in commands]
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                replies = self._handler(batch)
                if len(replies) != len(commands):
                    raise RuntimeError(
                        f"handler answered {len(replies)} of {len(commands)} commands"
                    )
            except ServiceUnavailableError:
                raise
            except Exception as exc:
                # Info, not warning: a retry that heals is routine; what does not
                # heal is dead-lettered, and that is logged as a warning.
                log.info(
                    "%s: batch of %d failed on attempt %d: %r",
                    self.name,
                    len(commands),
                    attempt,
                    exc,
                )
                if len(commands) == 1 or attempt == self._retry.max_attempts:
                    break
                self._counts["retries"] += 1
                self._sleep(self._retry.backoff_s(attempt, self._random.random()))
            else:
                return [
                    self._answer(c, r) for c, r in zip(commands, replies, strict=True)
                ]
        return [self._alone(c) for c in commands]

    def _alone(self, item: _Command) -> _Output:
        """The command on its own, retried; its dead letter once retries ran out."""
        attempt = 1
        while True:
            try:
                [reply] = self._handler([item.command])
            except ServiceUnavailableError:
                raise
            except Exception as exc:
                if attempt >= self._retry.max_attempts:
                    return self._dead(
                        item.delivery,
                        f"handler failed {attempt} times, last: {exc!r}",
                        attempt,
                    )
                self._counts["retries"] += 1
                self._sleep(self._retry.backoff_s(attempt, self._random.random()))
                attempt += 1
            else:
                return self._answer(item, reply)

    def _answer(self, item: _Command, reply: EventMessage) -> _Output:
        if reply.command_id is None:
            # Ties the reply to the command it answers. A reply the handler
            # stored earlier keeps the commandId of the attempt that made it.
            reply = msgspec.structs.replace(reply, command_id=item.command.message_id)
        try:
            value = self._codec.encode(reply)
        except MessageTooLargeError as exc:
            return self._dead(item.delivery, f"the reply cannot be sent: {exc}", 1)
        return _Output(item.delivery, item.reply_topic, reply.saga_id, value)

    def _pause(self, exc: ServiceUnavailableError, size: int) -> None:
        """Open the breaker: wait, then let the listener redeliver the batch."""
        self._trips += 1
        self._counts["unavailable"] += 1
        wait = min(
            self._retry.pause_s(self._trips, self._random.random()), self._max_pause_s
        )
        log.warning(
            "%s: handler unavailable (%s): %d records put back, breaker open, "
            "retrying in %.1f s",
            self.name,
            exc,
            size,
            wait,
        )
        self._stopping.wait(wait)

    # -- sending -------------------------------------------------------------

    def _send(self, outputs: list[_Output]) -> list[_Output]:
        """Send ``outputs``; the ones the broker acknowledged."""
        acked: list[_Output] = []
        pending = outputs
        for attempt in range(1, self._retry.send_attempts + 1):
            sent, pending, error = self._send_once(pending)
            acked.extend(sent)
            if not pending:
                break
            self._counts["failed_sends"] += len(pending)
            log.warning(
                "%s: %d replies and dead letters not acknowledged (attempt %d of "
                "%d): %s",
                self.name,
                len(pending),
                attempt,
                self._retry.send_attempts,
                error,
            )
            if attempt < self._retry.send_attempts:
                self._sleep(self._retry.backoff_s(attempt, self._random.random()))
        if pending:
            log.warning(
                "%s: %d records put back for redelivery: their replies or dead "
                "letters were not acknowledged",
                self.name,
                len(pending),
            )
        return acked

    def _send_once(
        self, outputs: list[_Output]
    ) -> tuple[list[_Output], list[_Output], BaseException | None]:
        """One attempt: (acknowledged, not acknowledged, an error that says why)."""
        try:
            # A failed send leaves the publisher to replace its producer: the
            # next attempt goes through a new one (see send_all).
            self._publisher.send_all(
                Outgoing(o.topic, o.key, o.value, o.delivery.partition) for o in outputs
            )
        except PublishError as exc:
            acked = [
                o
                for o, r in zip(outputs, exc.results, strict=True)
                if not isinstance(r, BaseException)
            ]
            failed = [
                o
                for o, r in zip(outputs, exc.results, strict=True)
                if isinstance(r, BaseException)
            ]
            return acked, failed, exc.first
        return outputs, [], None

    def _count(self, output: _Output) -> None:
        delivery = output.delivery
        self._counts["handled"] += 1
        if output.error is None:
            self._counts["replies"] += 1
        else:
            self._counts["dead_letters"] += 1
            log.warning(
                "%s: dead-lettered %s/%d/%d: %s",
                self.name,
                delivery.topic,
                delivery.partition,
                delivery.offset,
                output.error,
            )
        self._consumed[delivery.topic] = self._consumed.get(delivery.topic, 0) + 1
        self._produced[output.topic] = self._produced.get(output.topic, 0) + 1

    def _dead(self, delivery: Delivery, error: str, attempts: int) -> _Output:
        message = delivery.message
        letter = DeadLetter.of(
            delivery.position,
            delivery.key,
            delivery.value,
            error=error,
            source=self.name,
            at=datetime.now(UTC),
            max_message_bytes=self._kafka.max_message_bytes,
            message=message,
            attempts=attempts,
        )
        return _Output(
            delivery, SAGA_DLQ, delivery.key, self._letters.encode(letter), error
        )


def _is_events_topic(name: str) -> bool:
    try:
        return parse_topic(name).direction is Direction.EVENTS
    except InvalidTopicNameError:
        return False
