"""``SagaClient``: start sagas, and read one saga's state and history from the log.

Starting a saga writes a request to ``saga.requests`` (see
:mod:`actors.requests`) and returns its sagaId once the broker has it. History
is read from ``saga.events`` itself, and state is the fold of that history: the
same answer a restarted host would reach, with no Ray needed to ask.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from actors.core import (
    DEFINITIONS,
    HistoryCodec,
    LogRecord,
    SagaDefinition,
    SagaState,
    check_input,
    replay,
    start_message,
)
from actors.errors import RestoreError, StartError, UnknownSagaTypeError
from events.clients import Closing
from events.errors import EventsError, MessageDecodeError
from events.partitions import home_partition
from events.publisher import KafkaMessagePublisher
from events.reader import read_to_end
from events.settings import KafkaSettings
from events.topics import SAGA_EVENTS, SAGA_REQUESTS


class SagaClient(Closing):
    def __init__(
        self,
        kafka: KafkaSettings,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
    ) -> None:
        self._kafka = kafka
        self._definitions = definitions
        self._partitions = kafka.topics.partitions
        self._publisher: KafkaMessagePublisher | None = KafkaMessagePublisher(kafka)
        self._codec = HistoryCodec()

    def start(
        self, saga_type: str, input: Mapping[str, Any], saga_id: str | None = None
    ) -> str:
        """Request a saga; returns its sagaId once the request is acknowledged."""
        return self.start_many([(saga_type, input, saga_id)])[0]

    def start_many(
        self, requests: Iterable[tuple[str, Mapping[str, Any], str | None]]
    ) -> list[str]:
        """Request many sagas with one flush; returns their sagaIds in order.

        Raises :class:`~actors.errors.StartError` naming the sagas whose
        requests the broker did not acknowledge (and those it did)."""
        now = datetime.now(UTC)
        items = []
        for saga_type, input, saga_id in requests:
            definition = self._definitions.get(saga_type)
            if definition is None:
                raise UnknownSagaTypeError(
                    f"unknown saga type {saga_type!r}; known: "
                    f"{', '.join(sorted(self._definitions))}"
                )
            check_input(definition, input)
            saga_id = saga_id or str(uuid.uuid4())
            items.append(start_message(saga_id, saga_type, input, now))
        if self._publisher is None:
            self._publisher = KafkaMessagePublisher(self._kafka)
        futures: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for message in items:
            try:
                futures[message.saga_id] = self._publisher.publish(
                    SAGA_REQUESTS,
                    message,
                    partition=home_partition(message.saga_id, self._partitions),
                )
            except EventsError as exc:
                failed[message.saga_id] = str(exc)
        try:
            self._publisher.flush()
        except EventsError as exc:
            unacknowledged = str(exc)
        else:
            unacknowledged = "not acknowledged"
        for saga_id, future in futures.items():
            if not future.succeeded():
                failed[saga_id] = repr(future.exception or unacknowledged)
        ids = [message.saga_id for message in items]
        if failed:
            # A send that expired leaves an idempotent producer out of step
            # with the broker (its sequence numbers): the next start gets a
            # new one.
            self._drop_publisher()
            raise StartError([i for i in ids if i not in failed], failed)
        return ids

    def _drop_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            # What it still held has failed already: a close that fails too
            # loses nothing more.
            with contextlib.suppress(EventsError):
                publisher.close(timeout_s=1.0)

    def history(self, saga_id: str) -> list[LogRecord]:
        """The saga's log records, in order (empty if it never started)."""
        tp = TopicPartition(SAGA_EVENTS, home_partition(saga_id, self._partitions))
        key = saga_id.encode()
        return [
            self._decode(record)
            for record in read_to_end(self._kafka, {tp: 0})
            if record.key == key
        ]

    def state(self, saga_id: str) -> SagaState | None:
        """The saga's current state as the log has it (``None`` if unknown)."""
        state: SagaState | None = None
        for record in self.history(saga_id):
            state = replay(state, record)
        return state

    def states(self) -> dict[str, SagaState]:
        """Every saga in the log, folded: for audits and tests, not hot paths."""
        tps = {TopicPartition(SAGA_EVENTS, p): 0 for p in range(self._partitions)}
        states: dict[str, SagaState] = {}
        for raw in read_to_end(self._kafka, tps):
            record = self._decode(raw)
            state = replay(states.get(record.saga_id), record)
            assert state is not None
            states[record.saga_id] = state
        return states

    def _decode(self, raw: Any) -> LogRecord:
        try:
            return self._codec.decode(raw.value or b"")
        except MessageDecodeError as exc:
            raise RestoreError(
                f"{SAGA_EVENTS} partition {raw.partition} offset {raw.offset} is "
                f"not a saga log record: {exc}"
            ) from exc

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
