"""From a consumed record to an input of the saga core, or the reason it is refused.

Pure functions over one record: they decode it, check that it is keyed by its
sagaId and is the kind of message its topic takes, and build the core's
:class:`~actors.core.Start`, :class:`~actors.core.Cancel`,
:class:`~actors.core.Retry` or :class:`~actors.core.Reply`. What they refuse
becomes a dead letter with their reason; the host decides what is a duplicate,
since only its books know which sagas ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

import msgspec

from actors.core import (
    CANCEL_STEP,
    MIGRATE_STEP,
    RELEASE_STEP,
    RETRY_STEP,
    START_STEP,
    Cancel,
    Migrate,
    Release,
    Reply,
    Retry,
    SagaDefinition,
    Start,
    parse_migrate,
    parse_operator,
    parse_release,
    parse_start,
)
from actors.errors import InvalidRequestError, SagaError
from events.errors import MessageDecodeError
from events.transport.partitions import home_partition
from events.wire.messages import EventMessage, Message, MessageCodec, decode_json
from events.wire.topics import SAGA_REQUESTS


class _SagaIdOnly(msgspec.Struct, rename="camel"):
    saga_id: str = ""


_SAGA_ID_ONLY: Final = msgspec.json.Decoder(_SagaIdOnly)


class Inbound(NamedTuple):
    """A consumed record as the router hands it to a host. A plain tuple
    underneath: it crosses the Ray boundary cheaply."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes

    @property
    def where(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class Refused(NamedTuple):
    """Why a record cannot be applied; ``message`` if it decoded."""

    reason: str
    message: Message | None = None


def read_message(codec: MessageCodec, inbound: Inbound) -> Message | Refused:
    """The record's message, if it decodes and is keyed by its sagaId."""
    try:
        message = codec.decode(inbound.value)
    except MessageDecodeError as exc:
        return Refused(str(exc))
    if inbound.key is not None and inbound.key != message.saga_id:
        return Refused(
            f"key {inbound.key!r} differs from sagaId {message.saga_id!r}: messages "
            "must be keyed by their sagaId",
            message,
        )
    return message


def to_input(
    inbound: Inbound,
    message: Message,
    definitions: Mapping[str, SagaDefinition],
    now: int,
    jitter: float,
    codec: MessageCodec,
) -> Start | Cancel | Retry | Release | Migrate | Reply | Refused:
    """A request on ``saga.requests``, a reply anywhere else."""
    if inbound.topic == SAGA_REQUESTS:
        try:
            return _request(message, definitions, now, codec)
        except SagaError as exc:
            return Refused(str(exc), message)
    return _reply(inbound.topic, message, now, jitter)


def _reply(topic: str, message: Message, now: int, jitter: float) -> Reply | Refused:
    if not isinstance(message, EventMessage):
        return Refused(f"{topic} takes replies (type 'event'), got a command", message)
    return Reply(
        saga_id=message.saga_id,
        topic=topic,
        step_id=message.step_id,
        message_id=message.message_id,
        success=message.success,
        payload=message.payload,
        error=message.error,
        now=now,
        jitter=jitter,
        command_id=message.command_id,
    )


def _request(
    message: Message,
    definitions: Mapping[str, SagaDefinition],
    now: int,
    codec: MessageCodec,
) -> Start | Cancel | Retry | Release | Migrate | Refused:
    """A start request, or an operator's cancel, retry, release or migrate,
    by its stepId."""
    step = message.step_id
    if step == RELEASE_STEP:
        return _release(message, now, codec)
    if step == MIGRATE_STEP:
        move = parse_migrate(message)
        return Migrate(
            saga_id=message.saga_id,
            request_id=message.message_id,
            reason=move.reason,
            operator=move.operator,
            to_version=move.version,
            now=now,
        )
    if step in (CANCEL_STEP, RETRY_STEP):
        asked = parse_operator(message)
        kind = Cancel if step == CANCEL_STEP else Retry
        return kind(
            saga_id=message.saga_id,
            request_id=message.message_id,
            reason=asked.reason,
            operator=asked.operator,
            now=now,
        )
    if step != START_STEP:
        raise InvalidRequestError(
            f"saga.requests takes stepId {START_STEP!r}, {CANCEL_STEP!r} or "
            f"{RETRY_STEP!r}, not {step!r}"
        )
    definition, request = parse_start(message, definitions)
    return Start(
        saga_id=message.saga_id,
        saga_type=definition.name,
        input=request.input,
        now=now,
    )


def _release(message: Message, now: int, codec: MessageCodec) -> Release | Refused:
    """An operator's release; a replayed message must be a reply for the saga."""
    asked = parse_release(message)
    reply = None
    if asked.how == "replayed":
        try:
            replayed = codec.decode(asked.message.encode())
        except MessageDecodeError as exc:
            return Refused(f"the replayed message cannot be read: {exc}", message)
        if replayed.saga_id != message.saga_id:
            return Refused(
                f"the replayed message is saga {replayed.saga_id}'s, not "
                f"{message.saga_id}'s",
                message,
            )
        found = _reply(asked.topic, replayed, now, 0.0)
        if isinstance(found, Refused):
            return Refused(f"the replayed message: {found.reason}", message)
        reply = found
    return Release(
        saga_id=message.saga_id,
        request_id=message.message_id,
        reason=asked.reason,
        operator=asked.operator,
        origin=asked.origin,
        how=asked.how,
        reply=reply,
        now=now,
    )


def not_in_flight(saga_id: str, part_finished: bool, retention: int) -> str:
    """Why an operator's request for a saga not held here is refused."""
    if part_finished:
        return (
            f"saga {saga_id} has ended and only a failed saga can be acted on: "
            "there is nothing to cancel or retry"
        )
    return unknown_saga(saga_id, retention)


def home_of(inbound: Inbound, partition_count: int) -> int:
    """The partition whose owner takes ``inbound``: its saga's home partition,
    by its key, or else by the sagaId in its value. With neither, the record's
    own partition: that partition's owner dead-letters it. Never raises."""
    saga_id = inbound.key
    if saga_id is None:
        try:
            saga_id = decode_json(_SAGA_ID_ONLY, inbound.value).saga_id
        except MessageDecodeError:
            saga_id = ""
    if not saga_id:
        return inbound.partition
    return home_partition(saga_id, partition_count)


def misrouted(saga_id: str, partition: int, owned: list[int]) -> str:
    return (
        f"saga {saga_id} lives on partition {partition}, which this host does not "
        f"own ({owned}): misrouted"
    )


def unknown_saga(saga_id: str, retention: int) -> str:
    return (
        f"no saga {saga_id} is known: never started, or it ended before the last "
        f"{retention} sagas of its partition"
    )
