"""``SagaClient``: start sagas, ask them to cancel or retry, and read one saga's
state and history from the log, once or as it grows.

Starting a saga, and an operator's cancel or retry, writes a request to
``saga.requests`` (see :mod:`actors.core.requests`) and returns once the broker
has it: the saga applies it, and its log says what came of it. History
is read from ``saga.events`` itself, through the fence every reader of it
applies (:class:`~actors.core.Fence`), and state is the fold of that history:
the same answer a restarted host would reach, with no Ray needed to ask.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from actors.core import (
    DEFINITIONS,
    TERMINAL_EVENTS,
    Fence,
    LogRecord,
    MigrateRequest,
    OperatorRequest,
    SagaDefinition,
    SagaState,
    check_input,
    migrate_message,
    operator_message,
    replay,
    replay_log,
    start_message,
)
from actors.errors import RestoreError, StartError, UnknownSagaTypeError
from events.errors import MessageDecodeError, PublishError
from events.transport.clients import Closing
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionTail, read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, Record
from events.wire.messages import CommandMessage
from events.wire.topics import SAGA_EVENTS, SAGA_REQUESTS


class SagaClient(Closing):
    def __init__(
        self,
        kafka: KafkaSettings,
        definitions: Mapping[str, SagaDefinition] = DEFINITIONS,
    ) -> None:
        self._kafka = kafka
        self._definitions = definitions
        self._partitions = kafka.topics.partitions
        self._publisher = KafkaMessagePublisher(kafka)

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
        publisher = self._publisher
        ids = [message.saga_id for message in items]
        try:
            publisher.send_all(
                publisher.outgoing(
                    SAGA_REQUESTS,
                    message,
                    home_partition(message.saga_id, self._partitions),
                )
                for message in items
            )
        except PublishError as exc:
            failed = {
                saga_id: repr(result)
                for saga_id, result in zip(ids, exc.results, strict=True)
                if isinstance(result, BaseException)
            }
            raise StartError([i for i in ids if i not in failed], failed) from exc
        return ids

    def request(self, saga_id: str, step: str, reason: str, operator: str) -> str:
        """An operator's ``step`` (``cancel`` or ``retry``) for ``saga_id``;
        returns the request's id once the broker has it."""
        request_id = str(uuid.uuid4())
        message = operator_message(
            saga_id,
            step,
            request_id,
            OperatorRequest(reason=reason, operator=operator),
            datetime.now(UTC),
        )
        self._request(message)
        return request_id

    def migrate(self, saga_id: str, version: int, reason: str, operator: str) -> str:
        """Ask ``saga_id`` to go on on ``version`` of its definition; returns
        the request's id once the broker has it."""
        request_id = str(uuid.uuid4())
        message = migrate_message(
            saga_id,
            request_id,
            MigrateRequest(reason=reason, operator=operator, version=version),
            datetime.now(UTC),
        )
        self._request(message)
        return request_id

    def release(self, message: CommandMessage) -> str:
        """Send a release request (``release_message``) to the saga it names;
        returns where it landed, ``topic/partition/offset``."""
        ack = self._request(message)
        return f"{ack.topic}/{ack.partition}/{ack.offset}"

    def _request(self, message: CommandMessage) -> Ack:
        """Send an operator's request to its saga's home partition of
        ``saga.requests``; acknowledged, or raise."""
        partition = home_partition(message.saga_id, self._partitions)
        publisher = self._publisher
        [ack] = publisher.send_all(
            [publisher.outgoing(SAGA_REQUESTS, message, partition)]
        )
        return ack

    def watch(self, saga_id: str) -> SagaWatch:
        """Follow the saga's log live: see :class:`SagaWatch`."""
        return SagaWatch(self._kafka, saga_id)

    def history(self, saga_id: str) -> list[LogRecord]:
        """The saga's log records, in order (empty if it never started)."""
        tp = TP(SAGA_EVENTS, home_partition(saga_id, self._partitions))
        # The whole partition goes through the fence, not the saga's key
        # alone: the claims that set the epoch in force are keyed otherwise.
        return [r for r in self._records({tp: 0}) if r.saga_id == saga_id]

    def histories(self, saga_ids: Iterable[str]) -> dict[str, list[LogRecord]]:
        """Each saga's log records, reading each home partition once."""
        found: dict[str, list[LogRecord]] = {s: [] for s in saga_ids}
        homes = {home_partition(s, self._partitions) for s in found}
        for record in self._records({TP(SAGA_EVENTS, p): 0 for p in homes}):
            if record.saga_id in found:
                found[record.saga_id].append(record)
        return found

    def state(self, saga_id: str) -> SagaState | None:
        """The saga's current state as the log has it (``None`` if unknown)."""
        return replay_log(self.history(saga_id))

    def states(self) -> dict[str, SagaState]:
        """Every saga in the log, folded: for audits and tests, not hot paths."""
        tps = {TP(SAGA_EVENTS, p): 0 for p in range(self._partitions)}
        states: dict[str, SagaState] = {}
        for record in self._records(tps):
            state = replay(states.get(record.saga_id), record)
            assert state is not None
            states[record.saga_id] = state
        return states

    def in_flight(self) -> dict[str, list[LogRecord]]:
        """The log records of every saga that has not ended, by sagaId."""
        tps = {TP(SAGA_EVENTS, p): 0 for p in range(self._partitions)}
        histories: dict[str, list[LogRecord]] = {}
        ended: set[str] = set()
        for record in self._records(tps):
            histories.setdefault(record.saga_id, []).append(record)
            if any(isinstance(e, TERMINAL_EVENTS) for e in record.events):
                ended.add(record.saga_id)
        return {k: v for k, v in histories.items() if k not in ended}

    def _records(self, starts: Mapping[TP, int]) -> Iterator[LogRecord]:
        """The records the fence applies, read from ``starts`` (offset 0 of
        each partition: where the epoch in force is known to be 0)."""
        fence = Fence()
        for raw in read_to_end(self._kafka, starts):
            record = admit(fence, raw)
            if record is not None:
                yield record

    def close(self) -> None:
        self._publisher.close()


class SagaWatch(Closing):
    """One saga's log as it grows: each :meth:`poll` returns its records that
    arrived since the last (the first polls return its history so far), and
    :attr:`state` is their fold. Reads the saga's home partition from its
    start, through the fence, with no consumer group."""

    def __init__(self, kafka: KafkaSettings, saga_id: str) -> None:
        self.saga_id = saga_id
        self.state: SagaState | None = None
        tp = TP(SAGA_EVENTS, home_partition(saga_id, kafka.topics.partitions))
        self._fence = Fence()
        self._tail = PartitionTail(kafka, {tp: 0})

    def poll(self, timeout_ms: int) -> list[LogRecord]:
        """The saga's records that arrived, waiting up to ``timeout_ms``."""
        found = []
        for raw in self._tail.poll(timeout_ms):
            record = admit(self._fence, raw)
            if record is not None and record.saga_id == self.saga_id:
                self.state = replay(self.state, record)
                found.append(record)
        return found

    @property
    def caught_up(self) -> bool:
        """Whether the watch has read the log as far as it reached at the last
        poll: a state that ended is then final (unless a retry comes later)."""
        return self._tail.caught_up()

    def close(self) -> None:
        self._tail.close()


def admit(fence: Fence, raw: Record) -> LogRecord | None:
    """A record of ``saga.events`` through ``fence``: the saga record it holds,
    or ``None`` (a claim, or a replaced owner's record)."""
    where = f"{SAGA_EVENTS} partition {raw.partition} offset {raw.offset}"
    try:
        return fence.read(raw.partition, raw.value, where)
    except MessageDecodeError as exc:
        raise RestoreError(
            f"{where} is neither a saga log record nor a claim: {exc}"
        ) from exc
