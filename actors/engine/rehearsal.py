"""What a host would do with a record, worked out offline: a dry run.

``saga dlq replay --dry-run`` feeds a dead letter's message (or a fixed
version of it) through the same steps a host takes (:mod:`actors.engine.inbound`
to decode it and make it an input, then the pure decider) on the saga's state
folded from its log, and reports the saga events and commands that would come
of it, or why the host would refuse it. Nothing is sent; no clock is read here
(``now`` comes from the caller, and retries' jitter is 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from actors.core import (
    AnySagaEvent,
    LogRecord,
    Reply,
    SagaDefinition,
    SagaState,
    Send,
    Start,
    Verdict,
    decide,
    replay_log,
)
from actors.engine.inbound import Inbound, Refused, read_message, to_input
from events.wire.messages import MessageCodec


class Rehearsal(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one input, had the host applied it at ``now`` (epoch ms)."""

    saga_id: str | None
    #: What the saga was before, "" when the log has no such saga.
    status_before: str
    step_before: str
    #: applied, duplicate, or the reason it would be dead-lettered
    verdict: str
    reason: str = ""
    events: list[AnySagaEvent] = []
    commands: list[Send] = []
    status_after: str = ""
    now: int = 0

    @classmethod
    def blank(
        cls, saga_id: str | None, state: SagaState | None, verdict: str, now: int
    ) -> Rehearsal:
        """A rehearsal for a saga whose state is ``state`` (``None``: not in
        the log), its outcome beyond ``verdict`` still to be filled in."""
        return cls(
            saga_id=saga_id,
            status_before="" if state is None else str(state.status),
            step_before="" if state is None else state.step_id,
            verdict=verdict,
            now=now,
        )


def rehearse(
    inbound: Inbound,
    history: Iterable[LogRecord],
    definitions: Mapping[str, SagaDefinition],
    codec: MessageCodec,
    now: int,
) -> Rehearsal:
    """What the host would do with ``inbound`` for a saga whose log is
    ``history`` (the saga's own records, in order)."""
    state = replay_log(history)
    message = read_message(codec, inbound)
    known = message.message if isinstance(message, Refused) else message
    blank = Rehearsal.blank(
        inbound.key if known is None else known.saga_id, state, "refused", now
    )
    replace = msgspec.structs.replace
    if isinstance(message, Refused):
        return replace(blank, reason=message.reason)
    saga_id = message.saga_id
    if state is not None and state.saga_id != saga_id:
        raise ValueError(f"the history is saga {state.saga_id}'s, not {saga_id}'s")
    item = to_input(inbound, message, definitions, now, 0.0, codec)
    if isinstance(item, Refused):
        return replace(blank, reason=item.reason)
    if state is not None:
        saga_type = state.saga_type
    elif isinstance(item, Start):
        saga_type = item.saga_type
    else:
        what = "reply" if isinstance(item, Reply) else "request"
        return replace(
            blank,
            reason=f"the log has no saga {saga_id}: the {what} has nothing to apply to",
        )
    decision = decide(definitions[saga_type], state, item)
    if decision.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
        return replace(blank, reason=decision.reason)
    return replace(
        blank,
        verdict=str(decision.verdict),
        reason=decision.reason,
        events=decision.events,
        commands=decision.commands,
        status_after="" if decision.state is None else str(decision.state.status),
    )


#: Event fields that hold a time (epoch ms): shown relative to the decision.
_TIMES = ("deadline", "retryAt")


def relative_event(event: AnySagaEvent, at: int) -> dict[str, Any]:
    """An event as JSON, its times given as milliseconds after ``at`` (the
    decision's time): what a dry run and the real replay have in common."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    for name in _TIMES:
        if isinstance(data.get(name), int):
            data[name + "InMs"] = data.pop(name) - at
    return data
