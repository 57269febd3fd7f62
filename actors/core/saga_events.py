"""Saga events: the facts a saga's life is made of, and the log record that holds them.

These Structs are the wire format of ``saga.events``. Each event's ``type`` is an
explicit, stable tag string (``step_commanded``), never a class name, so renaming
a class cannot break a stored log. New fields must get defaults, so old logs
still decode. Events are named in the past tense.

One :class:`LogRecord` holds the events of one decision. A record is one Kafka
message, so a decision's events are appended together or not at all.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec

from events.wire.messages import decode_json
from events.wire.nesting import MAX_DEPTH

#: The log nests what a message carried deeper than the message did (record,
#: events, event, then the input or reply payload, against message, payload),
#: and a snapshot deeper still (chunk, sagas, state, replies, payload): the
#: log's bound leaves room, so whatever the wire accepted reads back.
LOG_MAX_DEPTH: Final = MAX_DEPTH + 8


class SagaEvent(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", tag_field="type"
):
    """Base of every saga event. ``type`` is the union tag."""


class SagaStarted(
    SagaEvent, frozen=True, kw_only=True, omit_defaults=True, tag="saga_started"
):
    """``version``: the version of its definition the saga runs on (1, and
    left out of the record, for logs from before versions)."""

    saga_id: str
    saga_type: str
    input: dict[str, Any]
    version: int = 1


class StepCommanded(SagaEvent, frozen=True, kw_only=True, tag="step_commanded"):
    """A step's command was issued; ``deadline`` (epoch ms) bounds the wait."""

    step: str
    attempt: int
    message_id: str
    deadline: int


class StepSucceeded(SagaEvent, frozen=True, kw_only=True, tag="step_succeeded"):
    step: str
    attempt: int
    reply_id: str
    payload: dict[str, Any] = {}


class StepFailed(SagaEvent, frozen=True, kw_only=True, tag="step_failed"):
    """The participant said no, or the command could not be built (no reply)."""

    step: str
    attempt: int
    error: str
    reply_id: str | None = None


class StepTimedOut(
    SagaEvent, frozen=True, kw_only=True, omit_defaults=True, tag="step_timed_out"
):
    """No answer by the deadline. ``retry_at`` (epoch ms) is when the next attempt
    goes out, or ``None``: attempts are used up, the step is in doubt and the
    saga compensates it. ``in_doubt``: attempts are used up but the step cannot
    be compensated, so it is retried until it is answered."""

    step: str
    attempt: int
    retry_at: int | None
    in_doubt: bool = False


class CompensationCommanded(
    SagaEvent, frozen=True, kw_only=True, tag="compensation_commanded"
):
    step: str
    attempt: int
    message_id: str
    deadline: int


class StepCompensated(SagaEvent, frozen=True, kw_only=True, tag="step_compensated"):
    step: str
    attempt: int
    reply_id: str


class CompensationFailed(
    SagaEvent, frozen=True, kw_only=True, tag="compensation_failed"
):
    """A compensation was refused; it is retried at ``retry_at`` unless ``None``."""

    step: str
    attempt: int
    error: str
    retry_at: int | None
    reply_id: str | None = None


class CompensationTimedOut(
    SagaEvent,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="compensation_timed_out",
):
    """No answer by the deadline; retried at ``retry_at``. ``in_doubt``: its
    attempts are used up, and it is retried until it is answered. (Logs written
    before that rule have ``retry_at`` ``None`` here: the saga failed.)"""

    step: str
    attempt: int
    retry_at: int | None
    in_doubt: bool = False


class CancelRequested(SagaEvent, frozen=True, kw_only=True, tag="cancel_requested"):
    """An operator asked the saga to stop and undo what it did (``saga cancel``).

    ``abandoned`` names the step whose command was in flight and is given up on
    in doubt, to be compensated with the completed ones. When it is empty the
    awaited step has no compensation (it cannot be given up on: its effect could
    not be undone), so the cancel takes effect once that step answers: a success
    of the last step completes the saga all the same."""

    request_id: str
    reason: str
    #: Who asked (``user@host`` as the requester says).
    operator: str = ""
    abandoned: str = ""


class RetryRequested(SagaEvent, frozen=True, kw_only=True, tag="retry_requested"):
    """An operator asked a ``failed`` saga to try its compensation again
    (``saga retry``): the attempts before (``spent``) no longer count against
    the retry policy."""

    request_id: str
    reason: str
    operator: str = ""
    spent: int = 0


class DefinitionMoved(SagaEvent, frozen=True, kw_only=True, tag="definition_moved"):
    """An operator moved the saga onto another version of its definition
    (``saga migrate``): it goes on from where it is, on that version."""

    request_id: str
    from_version: int
    to_version: int
    reason: str
    operator: str = ""


class SagaHeld(SagaEvent, frozen=True, kw_only=True, tag="saga_held"):
    """A message for this saga could not be processed and was dead-lettered
    (``origin``: its ``topic/partition/offset``, the letter's origin). The saga
    holds every later reply behind it, in order, and its deadlines wait, until
    an operator replays or resolves that letter (``saga dlq``)."""

    origin: str
    reason: str


class ReplyHeld(
    SagaEvent, frozen=True, kw_only=True, omit_defaults=True, tag="reply_held"
):
    """A reply that came while the saga was held: kept here, applied in order
    when the hold is released."""

    topic: str
    step_id: str
    reply_id: str
    success: bool
    payload: dict[str, Any] = {}
    error: str | None = None
    command_id: str | None = None


class HoldReleased(SagaEvent, frozen=True, kw_only=True, tag="hold_released"):
    """An operator released the hold: ``replayed`` the letter at ``origin``
    (its message, or a fixed version, is applied next in this decision) or
    ``resolved`` it (closed without a replay). The held replies follow, in
    order."""

    request_id: str
    origin: str
    how: str
    reason: str = ""
    operator: str = ""
    #: The message replayed (as the saga took it), with ``how`` ``replayed``.
    replayed: ReplyHeld | None = None


class HeldReplyRefused(SagaEvent, frozen=True, kw_only=True, tag="held_reply_refused"):
    """A held reply the saga could not apply once released, and why: it is
    kept in the log (its :class:`ReplyHeld` before), never applied."""

    reply_id: str
    reason: str


class SagaCompleted(SagaEvent, frozen=True, kw_only=True, tag="saga_completed"):
    """Every step succeeded."""


class SagaCompensated(SagaEvent, frozen=True, kw_only=True, tag="saga_compensated"):
    """A step failed and every completed step was undone: rolled back."""

    reason: str


class SagaRejected(SagaEvent, frozen=True, kw_only=True, tag="saga_rejected"):
    """A step failed before anything needed undoing."""

    reason: str


class SagaFailed(SagaEvent, frozen=True, kw_only=True, tag="saga_failed"):
    """A compensation could not be carried out: a person must look at it."""

    reason: str


AnySagaEvent: TypeAlias = (
    SagaStarted
    | StepCommanded
    | StepSucceeded
    | StepFailed
    | StepTimedOut
    | CompensationCommanded
    | StepCompensated
    | CompensationFailed
    | CompensationTimedOut
    | CancelRequested
    | RetryRequested
    | DefinitionMoved
    | SagaHeld
    | ReplyHeld
    | HoldReleased
    | HeldReplyRefused
    | SagaCompleted
    | SagaCompensated
    | SagaRejected
    | SagaFailed
)

TERMINAL_EVENTS: Final = (SagaCompleted, SagaCompensated, SagaRejected, SagaFailed)

#: Each event class's stable tag, as it appears in ``type`` (looked up once:
#: ``msgspec.inspect`` is far too slow to ask per event).
TAG_OF: Final[dict[type, str]] = {
    cls: msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
    for cls in AnySagaEvent.__args__
}

#: The outcome each terminal event stands for, as status names.
OUTCOMES: Final[dict[type, str]] = {
    SagaCompleted: "completed",
    SagaCompensated: "compensated",
    SagaRejected: "rejected",
    SagaFailed: "failed",
}


class LogRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The events of one decision, numbered from ``seq`` (a saga's first event is 1).

    ``at`` is the decision's time (epoch ms); ``cause`` says what it reacted to
    (``topic/partition/offset`` of the input, or ``timer``); ``epoch`` is the
    epoch its writer owned the partition at (see :mod:`actors.core.ownership`:
    0 before the first claim, as in logs written before claims existed).
    """

    saga_id: str
    saga_type: str
    seq: int
    at: int
    events: list[AnySagaEvent]
    cause: str = ""
    epoch: int = 0


class HistoryCodec:
    """Encodes and decodes :class:`LogRecord`; built once, reused. ``decode``
    raises only a typed :class:`~events.errors.MessageDecodeError`."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(LogRecord)

    def encode(self, record: msgspec.Struct) -> bytes:
        """A :class:`LogRecord` (or any log entry: see ``ownership.LogCodec``)."""
        return self._encoder.encode(record)

    def decode(self, raw: bytes) -> LogRecord:
        return decode_json(self._decoder, raw, max_depth=LOG_MAX_DEPTH)
