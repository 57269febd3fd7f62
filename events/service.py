"""``CommandService``: the listener machinery of a participant service.

A service instance is a member of its own consumer group over its command
topics (more instances share the group). For each polled batch it:

1. dead-letters at once what cannot be decoded, or is not a command;
2. hands the commands to the handler as one batch, retried with exponential
   backoff and jitter up to ``max_attempts`` (a transient fault passes); if
   the batch keeps failing, it handles each command alone, retried the same
   way, and dead-letters (with origin, error and attempt count) only the one
   that keeps failing;
3. publishes each reply on the command's reply topic (its ``replyTopic``
   metadata, else the commands topic's events twin), on the same partition
   number, and waits for the broker's acknowledgement;
4. only then commits the batch's offsets.

Nothing is lost (an offset is committed only after its message was answered
or dead-lettered) and a poison message never stalls the partition. A real
service outside this repository uses this class with its own handler.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from events.backoff import backoff_ms
from events.clients import Closing
from events.dead_letters import DeadLetter, DeadLetterCodec
from events.listener import Delivery, KafkaEventListener
from events.messages import CommandMessage, EventMessage
from events.publisher import KafkaMessagePublisher
from events.settings import KafkaSettings
from events.topics import SAGA_DLQ, parse_topic

log = logging.getLogger(__name__)

#: Answers a batch of commands: one reply per command, in the same order.
BatchHandler = Callable[[Sequence[CommandMessage]], list[EventMessage]]


class RetrySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a failing handler is retried before its message is dead-lettered."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5
    initial_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 50
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    max_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 2_000
    jitter: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5

    def backoff_s(self, attempt: int, draw: float) -> float:
        wait = backoff_ms(
            attempt,
            self.initial_backoff_ms,
            self.multiplier,
            self.max_backoff_ms,
            self.jitter,
            draw,
        )
        return wait / 1000


class ServiceStats(msgspec.Struct, frozen=True):
    handled: int
    replies: int
    retries: int
    dead_letters: int
    #: Partitions this member holds: 0 until it has joined its group.
    assigned: int
    consumed: dict[str, int] = {}
    produced: dict[str, int] = {}


class CommandService(Closing):
    """Runs ``handler`` over ``topics`` as consumer group ``group_id``."""

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
    ) -> None:
        self.name = name
        self._handler = handler
        self._retry = retry or RetrySettings()
        self._sleep = sleep
        self._random = random.Random()
        self._letters = DeadLetterCodec()
        # Base64 grows a payload by a third: keep what fits in a letter.
        self._keep = kafka.max_message_bytes // 2
        self._publisher = KafkaMessagePublisher(kafka)
        self._listener = KafkaEventListener(
            kafka, topics, self._handle, group_id=group_id
        )
        self._counts = {"handled": 0, "replies": 0, "retries": 0, "dead_letters": 0}
        self._assigned: set[object] = set()
        self._consumed: dict[str, int] = {}
        self._produced: dict[str, int] = {}
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
        """Ask :meth:`run` to return after the batch in hand; thread-safe."""
        self._stopping.set()

    def wait_for_assignment(self, timeout_s: float = 30.0) -> None:
        self._listener.wait_for_assignment(timeout_s)

    def stats(self) -> ServiceStats:
        return ServiceStats(
            **self._counts,
            assigned=len(self._assigned),
            consumed=dict(self._consumed),
            produced=dict(self._produced),
        )

    def close(self) -> None:
        try:
            self._listener.close()
        finally:
            self._publisher.close()

    # -- one batch -----------------------------------------------------------

    def _handle(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        commands: list[tuple[Delivery, CommandMessage]] = []
        for delivery in deliveries:
            if delivery.error is not None:
                self._dead(delivery, str(delivery.error), 1)
            elif not isinstance(delivery.message, CommandMessage):
                self._dead(
                    delivery, f"{delivery.topic} takes commands, got an event", 1
                )
            else:
                commands.append((delivery, delivery.message))
        if commands:
            for (delivery, command), reply in self._answers(commands):
                if reply is not None:
                    self._reply(delivery, command, reply)
        # Replies and dead letters must be acknowledged before the offsets
        # that caused them are committed (the listener commits on return).
        self._publisher.flush()
        self._counts["handled"] += len(deliveries)
        for delivery in deliveries:
            self._consumed[delivery.topic] = self._consumed.get(delivery.topic, 0) + 1
        return list(deliveries)

    def _answers(
        self, commands: list[tuple[Delivery, CommandMessage]]
    ) -> list[tuple[tuple[Delivery, CommandMessage], EventMessage | None]]:
        """The whole batch, retried as a batch (a transient fault passes);
        if it keeps failing, each command alone, so only the one that keeps
        failing is dead-lettered."""
        batch = [command for _, command in commands]
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                replies = self._handler(batch)
                if len(replies) != len(commands):
                    raise RuntimeError(
                        f"handler answered {len(replies)} of {len(commands)} commands"
                    )
                return list(zip(commands, replies, strict=True))
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
        return [(item, self._alone(*item)) for item in commands]

    def _alone(
        self, delivery: Delivery, command: CommandMessage
    ) -> EventMessage | None:
        """The command on its own, retried; ``None`` once it was dead-lettered."""
        attempt = 1
        while True:
            try:
                [reply] = self._handler([command])
                return reply
            except Exception as exc:
                if attempt >= self._retry.max_attempts:
                    self._dead(
                        delivery,
                        f"handler failed {attempt} times, last: {exc!r}",
                        attempt,
                    )
                    return None
                self._counts["retries"] += 1
                self._sleep(self._retry.backoff_s(attempt, self._random.random()))
                attempt += 1

    def _reply(
        self, delivery: Delivery, command: CommandMessage, reply: EventMessage
    ) -> None:
        topic = (
            command.metadata.get("replyTopic") or parse_topic(delivery.topic).reply.name
        )
        self._publisher.publish(topic, reply, partition=delivery.partition)
        self._counts["replies"] += 1
        self._produced[topic] = self._produced.get(topic, 0) + 1

    def _dead(self, delivery: Delivery, error: str, attempts: int) -> None:
        message = delivery.message
        letter = DeadLetter(
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            error=error,
            dead_at=datetime.now(UTC),
            source=self.name,
            payload=delivery.value[: self._keep],
            payload_size=len(delivery.value),
            key=delivery.key,
            message_id=None if message is None else message.message_id,
            saga_id=delivery.key if message is None else message.saga_id,
            attempts=attempts,
        )
        log.warning(
            "%s: dead-lettered %s/%d/%d: %s",
            self.name,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            error,
        )
        self._publisher.publish_raw(
            SAGA_DLQ,
            delivery.key,
            self._letters.encode(letter),
            partition=delivery.partition,
        )
        self._counts["dead_letters"] += 1
        self._produced[SAGA_DLQ] = self._produced.get(SAGA_DLQ, 0) + 1
