"""Acting on dead letters through their sagas: ``saga dlq replay|resolve``.

A letter whose saga is held behind it (:mod:`actors.core.hold`: the saga logged
``saga_held`` with the letter's origin) is acted on through the saga: a release
request on ``saga.requests`` carries the replayed message (or none, for a
resolve), and the saga applies it and the replies it held, in order, in one
decision. Any other letter is replayed as it was: its original bytes (or a fixed
version) back to its topic, where its consumer takes it again.

A dry run takes the same path offline: the input the saga's host would build
(the release request, or the message itself) goes through
:func:`~actors.engine.rehearsal.rehearse`, the host's own steps on the saga's
state folded from its log. A command (a participant's letter) goes to its
service, not to a host: its dry run says where, and whether its saga still
waits on it. Nothing is sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from actors.app.client import SagaClient
from actors.core import (
    LogRecord,
    ReleaseRequest,
    SagaDefinition,
    awaits,
    release_message,
    replay_log,
)
from actors.engine.inbound import Inbound, Refused, read_message
from actors.engine.rehearsal import Rehearsal, rehearse
from actors.errors import SagaError
from events.errors import InvalidTopicNameError
from events.transport.dlq import DeadLetterQueue, Entry, refuse_closed
from events.wire.dead_letters import LetterState
from events.wire.messages import CommandMessage, MessageCodec
from events.wire.topics import SAGA_REQUESTS, Direction, parse_topic

_VERBS = {"replayed": "saga dlq replay", "resolved": "saga dlq resolve"}


class LetterError(SagaError):
    """A letter cannot be acted on as asked."""


class Plan(NamedTuple):
    """What acting on one letter means: ``release`` is the request that lets
    its saga go on when the saga is held behind it (``None``: the letter's
    message goes back to its topic)."""

    entry: Entry
    history: list[LogRecord]
    release: CommandMessage | None

    def inbound(self, codec: MessageCodec, payload: bytes | None) -> Inbound:
        """What the saga's host would take, as a record: the release request,
        or the letter's message (``payload``: its fixed version)."""
        letter = self.entry.letter
        if self.release is not None:
            value = codec.encode(self.release)
            return Inbound(SAGA_REQUESTS, 0, 0, self.release.saga_id, value)
        value = letter.payload if payload is None else payload
        return Inbound(letter.topic, letter.partition, letter.offset, letter.key, value)


def plan(
    client: SagaClient,
    entries: Iterable[Entry],
    *,
    how: str,
    payload: bytes | None,
    reason: str,
    operator: str,
) -> list[Plan]:
    """Each letter's plan, from its saga's log as it stands."""
    chosen = list(entries)
    histories = client.histories(
        s for e in chosen if (s := e.letter.saga_id or e.letter.key)
    )
    plans = []
    for entry in chosen:
        letter = entry.letter
        saga_id = letter.saga_id or letter.key
        history = histories.get(saga_id, []) if saga_id else []
        state = replay_log(history)
        origin = letter.origin
        release = None
        if state is not None and state.held == origin:
            message = _text(entry, payload) if how == "replayed" else ""
            # One id per letter and message: the dry run names the request the
            # real one sends, and the same release twice is a duplicate.
            digest = hashlib.sha256(message.encode()).hexdigest()[:16]
            release = release_message(
                state.saga_id,
                f"{how}:{entry.id}:{digest}",
                ReleaseRequest(
                    reason=reason or f"{_VERBS[how]} of dead letter {entry.id}",
                    operator=operator,
                    origin=origin,
                    how="replayed" if how == "replayed" else "resolved",
                    topic=letter.topic if how == "replayed" else "",
                    message=message,
                ),
                datetime.now(UTC),
            )
        plans.append(Plan(entry, history, release))
    return plans


def rehearsed(
    plans: Iterable[Plan],
    definitions: Mapping[str, SagaDefinition],
    codec: MessageCodec,
    payload: bytes | None,
    now: int,
) -> list[Rehearsal]:
    """What each plan would do, worked out offline."""
    return [
        _resent(p, codec, payload, now)
        if p.release is None and _to_a_service(p.entry.letter.topic)
        else rehearse(p.inbound(codec, payload), p.history, definitions, codec, now)
        for p in plans
    ]


def _to_a_service(topic: str) -> bool:
    try:
        return parse_topic(topic).direction is Direction.COMMANDS
    except InvalidTopicNameError:
        return False


def _resent(
    plan: Plan, codec: MessageCodec, payload: bytes | None, now: int
) -> Rehearsal:
    """A command goes back to its service, outside the engine: whether it takes
    effect is the service's to say (its idempotency record and natural keys
    keep it to once), so a dry run says where it goes and whether its saga
    still waits on it."""
    inbound = plan.inbound(codec, payload)
    state = replay_log(plan.history)
    service = parse_topic(inbound.topic).service
    outcome = Rehearsal.blank(
        inbound.key if state is None else state.saga_id, state, "resent", now
    )
    message = read_message(codec, inbound)
    replace = msgspec.structs.replace
    goes = f"to the {service} service on {inbound.topic}"
    if payload is None and not plan.entry.complete:
        return replace(
            outcome,
            verdict="refused",
            reason=f"letter {plan.entry.id} kept only part of an oversized "
            "original: replay it from its original topic and offset, or a fixed "
            "version with --payload",
        )
    if isinstance(message, Refused):
        why = f"which would dead-letter it again: {message.reason}"
        return replace(outcome, reason=f"{goes}, {why}")
    if state is None:
        why = f"the log has no saga {message.saga_id}: nothing waits on its answer"
    elif awaits(state, message.message_id):
        why = f"saga {state.saga_id} waits on this command: its answer goes on with it"
    else:
        why = (
            f"saga {state.saga_id} no longer waits on it ({state.status}, at "
            f"{state.step_id or 'its start'}): the service answers from its "
            "idempotency record if it took effect before (else it applies it, "
            "or refuses it by its own rules), and the saga takes the answer as "
            "a duplicate or a late one"
        )
    return replace(outcome, reason=f"{goes}; {why}")


def carry_out(
    queue: DeadLetterQueue,
    client: SagaClient,
    plans: list[Plan],
    state: LetterState,
    *,
    operator: str,
    reason: str,
    payload: bytes | None,
) -> list[Entry]:
    """Act on each letter: released through its saga, or replayed to its topic
    (or, resolved, closed), then recorded; all acknowledged, or raise."""
    # A letter replayed through its saga that still holds the saga behind it
    # (the replay was refused: the saga said why) can be acted on again.
    refuse_closed([p.entry for p in plans if p.release is None], str(state))
    done = []
    through_saga = [p for p in plans if p.release is not None]
    if through_saga:
        sent = [client.release(p.release) for p in through_saga if p.release]
        done += queue.mark(
            [dataclasses.replace(p.entry, action=None) for p in through_saga],
            state,
            operator=operator,
            reason=reason,
            sent=sent,
        )
    rest = [p.entry for p in plans if p.release is None]
    if rest and state is LetterState.REPLAYED:
        done += queue.replay(rest, operator=operator, reason=reason, payload=payload)
    elif rest:
        done += queue.resolve(rest, operator=operator, reason=reason)
    return sorted(done, key=lambda e: (e.partition, e.offset))


def _text(entry: Entry, payload: bytes | None) -> str:
    raw = entry.letter.payload if payload is None else payload
    if payload is None and not entry.complete:
        raise LetterError(
            f"letter {entry.id} kept only part of an oversized message: replay a "
            "fixed version with --payload, or resolve it"
        )
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise LetterError(
            f"letter {entry.id}'s message is not text, so its held saga cannot "
            "take it: replay a fixed version with --payload, or resolve it"
        ) from None
