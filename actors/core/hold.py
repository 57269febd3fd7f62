"""A saga held behind a dead letter: sequenced, as Axon does per aggregate.

When its host dead-letters a reply for a saga in flight (or a record keyed by
it that does not decode), the saga is *held* (:class:`Hold`, logged as
``saga_held``): it applies nothing after that message until an operator acts on
the letter, so its replies are never applied out of order. Replies that come
meanwhile are kept in its log (``reply_held``), its deadlines wait, a cancel is
refused; other sagas go on. The operator's :class:`Release` (``saga dlq replay``
or ``saga dlq resolve`` of the letter) is one decision: ``hold_released``, then
the replayed message (or its fixed version) as the reply it is, then each held
reply in order. A released reply that is a duplicate is passed over as any
duplicate is; one the saga refuses is kept with its reason
(``held_reply_refused``); a replayed message the saga would refuse refuses the
release, and the saga stays held.

Pure, like the rest of the core: what a reply does is the decider's, passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from actors.core.definitions import SagaDefinition
from actors.core.inputs import (
    Decision,
    Hold,
    Release,
    Reply,
    Send,
    Verdict,
    duplicate,
    refused,
)
from actors.core.saga_events import (
    AnySagaEvent,
    HeldReplyRefused,
    HoldReleased,
    ReplyHeld,
    SagaHeld,
)
from actors.core.state import SagaState, evolve

ReplyDecider = Callable[[SagaDefinition, SagaState, Reply], Decision]


def hold(state: SagaState, item: Hold) -> Decision:
    """Hold the saga behind the message at ``item.origin``; one that ended, or
    is held already (behind an earlier letter), stays as it is."""
    if state.status.terminal or state.held:
        return Decision([], [], state)
    event = SagaHeld(origin=item.origin, reason=item.reason)
    return Decision([event], [], evolve(state, event))


def hold_reply(state: SagaState, reply: Reply) -> Decision:
    """A reply for a held saga: kept in its log, in order, not applied."""
    held = {h.reply_id for h in state.held_replies}
    if reply.message_id in held or reply.message_id in state.seen:
        return duplicate(
            state, f"reply {reply.message_id} is held or was applied already"
        )
    event = kept(reply)
    return Decision([event], [], evolve(state, event))


def kept(reply: Reply) -> ReplyHeld:
    """A reply as the log keeps it, to be taken later."""
    return ReplyHeld(
        topic=reply.topic,
        step_id=reply.step_id,
        reply_id=reply.message_id,
        success=reply.success,
        payload=reply.payload,
        error=reply.error,
        command_id=reply.command_id,
    )


def taken(saga_id: str, held: ReplyHeld, now: int) -> Reply:
    """A kept reply, as the saga takes it at ``now``."""
    return Reply(
        saga_id=saga_id,
        topic=held.topic,
        step_id=held.step_id,
        message_id=held.reply_id,
        success=held.success,
        payload=held.payload,
        error=held.error,
        now=now,
        command_id=held.command_id,
    )


def held_reason(state: SagaState) -> str:
    return (
        f"saga {state.saga_id} is held behind the dead letter of the message at "
        f"{state.held}: replay or resolve that letter first (`saga dlq list "
        f"--saga-id {state.saga_id}`)"
    )


def release(
    definition: SagaDefinition,
    state: SagaState,
    item: Release,
    decide_reply: ReplyDecider,
) -> Decision:
    """Release the hold: the replayed message, then the held replies, in order."""
    if item.request_id in state.requests:
        return duplicate(state, f"request {item.request_id} was applied")
    if not state.held:
        return refused(state, f"saga {state.saga_id} is not held: nothing to release")
    if item.origin != state.held:
        return refused(
            state,
            f"saga {state.saga_id} is held behind the message at {state.held}, not "
            f"{item.origin}: replay or resolve the letter of {state.held}",
        )
    events: list[AnySagaEvent] = []
    commands: list[Send] = []
    released = HoldReleased(
        request_id=item.request_id,
        origin=item.origin,
        how=item.how,
        reason=item.reason,
        operator=item.operator,
        replayed=None if item.reply is None else kept(item.reply),
    )
    current = evolve(state, released)
    events.append(released)
    if item.reply is not None:
        # Taken now, as a reply that arrived with the release.
        reply = msgspec.structs.replace(item.reply, now=item.now)
        first = decide_reply(definition, current, reply)
        if first.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
            return refused(
                state,
                f"the replayed message would be refused, so saga {state.saga_id} "
                f"stays held: {first.reason}",
            )
        current = _add(first, current, events, commands)
    for held in state.held_replies:
        decision = decide_reply(
            definition, current, taken(state.saga_id, held, item.now)
        )
        if decision.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
            note = HeldReplyRefused(reply_id=held.reply_id, reason=decision.reason)
            current = evolve(current, note)
            events.append(note)
            continue
        current = _add(decision, current, events, commands)
    return Decision(events, commands, current)


def _add(
    decision: Decision,
    current: SagaState,
    events: list[AnySagaEvent],
    commands: list[Send],
) -> SagaState:
    """Add an applied (or duplicate: nothing) decision to the release's."""
    events.extend(decision.events)
    commands.extend(decision.commands)
    return decision.state if decision.state is not None else current
