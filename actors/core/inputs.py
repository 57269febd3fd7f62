"""The inputs a saga reacts to and the decision it makes, as data: what
:func:`~actors.core.decide.decide` takes and gives back. ``now`` is epoch
milliseconds, from outside, like the jitter and the ids.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeAlias

import msgspec

from actors.core.saga_events import AnySagaEvent
from actors.core.state import SagaState
from events.wire.messages import CommandMessage


class Start(msgspec.Struct, frozen=True, kw_only=True):
    saga_id: str
    saga_type: str
    input: dict[str, Any]
    now: int


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A participant's answer, as it arrived on ``topic``. ``jitter`` in [0, 1)
    spreads the retry of a refused compensation."""

    saga_id: str
    topic: str
    step_id: str
    message_id: str
    success: bool
    payload: dict[str, Any]
    error: str | None
    now: int
    jitter: float = 0.0
    #: The messageId of the command it answers, where the participant says.
    command_id: str | None = None


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """Time passed: the saga checks its deadline."""

    saga_id: str
    now: int
    jitter: float = 0.0


class _Operator(msgspec.Struct, frozen=True, kw_only=True):
    """An operator's request: ``request_id`` comes from the requester (it
    makes the request idempotent), ``operator`` says who asks."""

    saga_id: str
    request_id: str
    reason: str
    operator: str = ""
    now: int


class Cancel(_Operator, frozen=True, kw_only=True):
    """Stop the saga and undo what it did, through its compensations
    (``saga cancel``)."""


class Retry(_Operator, frozen=True, kw_only=True):
    """A ``failed`` saga tries the compensation it gave up on again, with a
    fresh retry policy (``saga retry``)."""


class Migrate(_Operator, frozen=True, kw_only=True):
    """Move the saga onto version ``to_version`` of its definition, to go on
    from where it is (``saga migrate``)."""

    to_version: int


class Release(_Operator, frozen=True, kw_only=True):
    """An operator replayed (``how`` ``replayed``: ``reply`` is the letter's
    message, or a fixed version of it) or resolved (``resolved``) the dead
    letter at ``origin`` that the saga is held behind (``saga dlq``)."""

    origin: str
    how: str
    reply: Reply | None = None


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """The saga's host dead-lettered a message for it (at ``origin``, for
    ``reason``): from now on the saga holds its later replies behind it."""

    saga_id: str
    origin: str
    reason: str
    now: int


Input: TypeAlias = Start | Reply | Tick | Cancel | Retry | Release | Hold | Migrate


class Send(msgspec.Struct, frozen=True):
    """A command to publish on ``topic``."""

    topic: str
    message: CommandMessage


class Verdict(StrEnum):
    APPLIED = "applied"  # the input moved the saga (or was a tick with nothing due)
    DUPLICATE = "duplicate"  # already applied before: harmless, dropped
    UNEXPECTED = "unexpected"  # cannot apply: the caller dead-letters it
    #: A success for a step the saga gave up on in doubt and compensated: it did
    #: take effect after all. Consistent (its compensation undoes or barred it)
    #: but never silent: the caller dead-letters it with the reason and counts it.
    LATE = "late"


class Decision(msgspec.Struct, frozen=True):
    events: list[AnySagaEvent]
    commands: list[Send]
    state: SagaState | None
    verdict: Verdict = Verdict.APPLIED
    reason: str = ""


def refused(state: SagaState | None, reason: str) -> Decision:
    """The input cannot apply: nothing changes, and its caller dead-letters it."""
    return Decision([], [], state, Verdict.UNEXPECTED, reason)


def duplicate(state: SagaState | None, reason: str) -> Decision:
    """The input was applied before: nothing changes."""
    return Decision([], [], state, Verdict.DUPLICATE, reason)
