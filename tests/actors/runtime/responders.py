"""A stand-in for the participant services: answers commands, audits effects.

It reads every command topic by assignment (no group, so no join delay),
applies an effect once per messageId (a re-sent command with the same
messageId gets the stored reply again, like the IdempotencyService will) and
answers on the command's reply topic. The rules make outcomes predictable:
users named ``blocked-*`` fail verification, and deposits over 1,000 fail
(the payment is then refunded). For an operator's actions: the payments of
users named ``hold-*`` are never answered (the step stays in flight), and the
refunds of users named ``stubborn-*`` are refused while ``stubborn`` is set.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from events.transport.clients import connect, consumer_options
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import COMMAND_TOPICS


def rule(command: CommandMessage, stubborn: bool) -> tuple[bool, dict[str, Any]] | None:
    """The answer to ``command``, or ``None`` for none."""
    payload = command.payload
    user = str(payload.get("userId", ""))
    match command.step_id:
        case "verify_user":
            return not user.startswith("blocked-"), {}
        case "process_payment":
            if user.startswith("hold-"):
                return None
            return True, {"paymentId": f"pay-{command.saga_id}"}
        case "deposit":
            return payload["amount"] <= 1000, {}
        case "process_payment.compensate":
            return not (stubborn and user.startswith("stubborn-")), {}
    return True, {}


class Responder:
    def __init__(self, kafka: KafkaSettings, partitions: int) -> None:
        self._codec = MessageCodec()
        self._consumer = connect(KafkaConsumer, kafka, consumer_options(kafka, None))
        self._consumer.assign(
            [TopicPartition(t, p) for t in COMMAND_TOPICS for p in range(partitions)]
        )
        self._consumer.seek_to_beginning()
        self._publisher = KafkaMessagePublisher(kafka)
        self.replies: dict[str, EventMessage] = {}  # by command messageId
        self.effects: Counter[tuple[str, str]] = Counter()  # (sagaId, stepId)
        self.received: Counter[str] = Counter()  # by command messageId
        #: While set, refunds of ``stubborn-*`` users are refused.
        self.stubborn = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.received.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    self._answer(record.partition, record.value)
            self._publisher.flush()

    def _answer(self, partition: int, value: bytes) -> None:
        command = self._codec.decode(value)
        assert isinstance(command, CommandMessage)
        self.received[command.message_id] += 1
        reply = self.replies.get(command.message_id)
        if reply is None:
            answer = rule(command, self.stubborn)
            if answer is None:
                return
            success, payload = answer
            if not success and command.step_id.endswith(".compensate"):
                # A refused compensation is decided afresh next time, as the
                # services do: no stored reply, no effect.
                self._publisher.publish(
                    command.metadata["replyTopic"],
                    _reply(command, success, payload),
                    partition=partition,
                )
                return
            self.effects[(command.saga_id, command.step_id)] += 1
            reply = _reply(command, success, payload)
            self.replies[command.message_id] = reply
        self._publisher.publish(
            command.metadata["replyTopic"], reply, partition=partition
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()
        self._publisher.close()


def _reply(
    command: CommandMessage, success: bool, payload: dict[str, Any]
) -> EventMessage:
    return EventMessage(
        message_id=f"reply:{command.message_id}",
        saga_id=command.saga_id,
        step_id=command.step_id,
        timestamp=datetime.now(UTC),
        success=success,
        payload=payload,
        error=None if success else f"{command.step_id} refused",
    )
