"""What a saga's log says happened to it, as a backtest replays it.

A backtest feeds the decider the inputs the world gave the saga, and lets the
policy under test decide the rest. From the log (and the late replies its
host dead-lettered) :func:`recorded` takes, by folding the saga's events as
the engine does:

- the **answers** each command stream got (a step's forward command, or its
  compensation), each with when it arrived, counted from the stream's first
  command: a participant applies a step once (every attempt carries one
  idempotency key), so a slow or frozen participant answers at the same time
  however often it is asked, and a longer timeout sees that answer sooner;
  and when the saga last acted on a stream it never heard back on;
- the **outside inputs**: the operator's cancels, retries, migrations and
  dead-letter releases, and the holds, at their times;
- each **timer**'s lag past its deadline (how late the engine acted on it),
  and for a deadline an answer beat, that the timer came after the answer;
- the **jitter** each retry drew, taken back from the retry time it logged;
- the outcome: status, reason, end time.

Pure: the records come in, the recording goes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from actors.core import (
    Action,
    AnySagaEvent,
    Cancel,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    Hold,
    HoldReleased,
    Input,
    LogRecord,
    Migrate,
    Release,
    ReplyHeld,
    Retry,
    SagaDefinition,
    SagaState,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    evolve,
)
from actors.core.compatibility import recorded_input
from actors.errors import BacktestError, DefinitionError
from events.wire.messages import EventMessage

#: The inputs from outside a saga's exchange with its participants.
_OUTSIDE = (Cancel, Retry, Migrate, Hold, Release)
#: A timer's kinds: the deadline of a reply (``timeout``) or of a retry's wait.
TIMEOUT, RETRY = "timeout", "retry"


class Answer(NamedTuple):
    """A participant's answer, ``after_ms`` after its stream's first command;
    ``rank`` orders answers and inputs of one millisecond as recorded."""

    after_ms: int
    rank: int
    reply_id: str
    success: bool
    payload: dict[str, Any]
    error: str | None
    #: Inferred for a stream the saga never heard back on: it reaches the
    #: saga only while the saga still waits on that stream (after that, the
    #: recording shows nothing came: a refusal to a saga that moved on is
    #: dropped, as its host drops it).
    inferred: bool = False


class Outside(NamedTuple):
    """An input from outside the saga's exchange with its participants."""

    at: int
    rank: int
    input: Input


class Recording(NamedTuple):
    saga_id: str
    saga_type: str
    input: dict[str, Any]
    started_at: int
    #: When each command stream (a stepId) first went out, and the last
    #: decision the saga made while waiting on it.
    first_sent: dict[str, int]
    last_heard: dict[str, int]
    #: The stream the saga still waited on when its log ends ("" if it ended).
    awaited: str
    answers: dict[str, list[Answer]]
    outside: list[Outside]
    #: (stepId, attempt, kind) -> how long after its deadline the timer acted
    #: (with its rank), or, when an answer came first, a lag just past it.
    lags: dict[tuple[str, int, str], tuple[int, int]]
    #: (stepId, attempt) -> the jitter draw the retry after it used.
    draws: dict[tuple[str, int], float]
    #: How late each timer the engine acted on came, past its deadline.
    timer_lags: list[int]
    status: str
    reason: str
    ended_at: int | None
    #: Its newest record's time.
    last_at: int


def recorded(
    records: Iterable[LogRecord],
    late: Iterable[tuple[int, EventMessage]],
    definitions: Mapping[str, SagaDefinition],
) -> Recording:
    """One saga's recording from its log records (in order) and the replies
    for it its host dead-lettered (``(time, message)``), under the
    ``definitions`` the log was written with."""
    folding = _Folding(definitions)
    for record in records:
        folding.record(record)
    state = folding.state
    if state is None:
        raise BacktestError("a saga's log without its saga_started record")
    for at, message in late:
        # The success of a step given up on in doubt: the participant's
        # answer after all (its other letters were held behind or refused).
        if message.success and message.step_id == state.doubtful:
            folding.answer(
                message.step_id,
                at,
                1 << 40,
                message.message_id,
                True,
                message.payload,
                message.error,
            )
    return Recording(
        saga_id=state.saga_id,
        saga_type=state.saga_type,
        input=state.input,
        started_at=folding.started_at,
        first_sent=folding.first_sent,
        last_heard=folding.last_heard,
        awaited="" if state.status.terminal else state.step_id,
        answers=folding.answers,
        outside=folding.outside,
        lags=folding.lags,
        draws=folding.draws,
        timer_lags=folding.timer_lags,
        status=str(state.status),
        reason=state.reason,
        ended_at=folding.ended_at,
        last_at=folding.last_at,
    )


class _Folding:
    """The saga's events folded one by one, each read against the state
    before it."""

    def __init__(self, definitions: Mapping[str, SagaDefinition]) -> None:
        self.definitions = definitions
        self.state: SagaState | None = None
        self.started_at = 0
        self.ended_at: int | None = None
        self.last_at = 0
        self.first_sent: dict[str, int] = {}
        self.last_heard: dict[str, int] = {}
        self.answers: dict[str, list[Answer]] = {}
        self.outside: list[Outside] = []
        self.lags: dict[tuple[str, int, str], tuple[int, int]] = {}
        self.draws: dict[tuple[str, int], float] = {}
        self.timer_lags: list[int] = []
        self._replies: set[str] = set()

    def record(self, record: LogRecord) -> None:
        # A release's decision applies replies it carries or held: they
        # arrived earlier (as reply_held) or with the release (an input).
        released = bool(record.events) and isinstance(record.events[0], HoldReleased)
        state = self.state
        if state is not None and not state.status.terminal:
            # The saga listened on the stream it waited on up to this decision.
            self.last_heard[state.step_id] = record.at
        if state is not None:
            reacted = recorded_input(record, self.definitions[record.saga_type])
            if isinstance(reacted, _OUTSIDE):
                self.outside.append(Outside(record.at, record.seq, reacted))
                self._beaten(state, record.at, record.seq)
        for seq, event in enumerate(record.events, record.seq):
            before = self.state
            self.state = evolve(before, event)
            if before is None:
                self.started_at = record.at
                continue
            self._read(before, event, record.at, seq, released)
        self.last_at = record.at
        if self.state is not None and self.state.status.terminal:
            self.ended_at = record.at

    def _read(
        self,
        before: SagaState,
        event: AnySagaEvent,
        at: int,
        seq: int,
        released: bool,
    ) -> None:
        match event:
            case (
                StepCommanded(attempt=attempt) | CompensationCommanded(attempt=attempt)
            ):
                step_id = self.state.step_id if self.state else ""
                self.first_sent.setdefault(step_id, at)
                self.last_heard[step_id] = at
                if attempt > 1 and before.retrying and before.deadline:
                    lag = at - before.deadline
                    self.lags[(step_id, attempt - 1, RETRY)] = (lag, seq)
                    self.timer_lags.append(lag)
            case StepTimedOut() | CompensationTimedOut():
                lag = at - before.deadline
                self.lags[(before.step_id, before.attempt, TIMEOUT)] = (lag, seq)
                self.timer_lags.append(lag)
                self._draw(before, event.retry_at, at)
            case (
                StepSucceeded(reply_id=reply_id)
                | StepFailed(reply_id=str() as reply_id)
                | StepCompensated(reply_id=reply_id)
                | CompensationFailed(reply_id=str() as reply_id)
            ) if not released:
                success = isinstance(event, StepSucceeded | StepCompensated)
                payload = event.payload if isinstance(event, StepSucceeded) else {}
                error = getattr(event, "error", None)
                self._beaten(before, at, seq)
                self.answer(before.step_id, at, seq, reply_id, success, payload, error)
                if isinstance(event, CompensationFailed):
                    self._draw(before, event.retry_at, at)
            case ReplyHeld():
                self._beaten(before, at, seq)
                self.answer(
                    event.step_id,
                    at,
                    seq,
                    event.reply_id,
                    event.success,
                    event.payload,
                    event.error,
                )

    def answer(
        self,
        step_id: str,
        at: int,
        rank: int,
        reply_id: str,
        success: bool,
        payload: dict[str, Any],
        error: str | None,
    ) -> None:
        first = self.first_sent.get(step_id)
        if first is None or reply_id in self._replies:
            return  # a copy of an answer taken already
        self._replies.add(reply_id)
        answer = Answer(at - first, rank, reply_id, success, payload, error)
        self.answers.setdefault(step_id, []).append(answer)

    def _beaten(self, before: SagaState, at: int, seq: int) -> None:
        """An input that came after a deadline its timer had not acted on: the
        timer would have come after it (at least a millisecond later)."""
        if before.deadline and at >= before.deadline:
            kind = RETRY if before.retrying else TIMEOUT
            key = (before.step_id, before.attempt, kind)
            self.lags.setdefault(key, (at - before.deadline + 1, seq + 1))

    def _draw(self, before: SagaState, retry_at: int | None, at: int) -> None:
        """The jitter draw a retry time was made with, taken back from it."""
        action = self._action(before)
        if retry_at is None or action is None:
            return
        tries = before.attempt - before.spent
        base = action.retry.wait_ms(tries, 0.0)
        share = action.retry.jitter
        if base <= 0 or share <= 0:
            return
        draw = (1.0 - (retry_at - at) / base) / share
        self.draws[(before.step_id, before.attempt)] = min(max(draw, 0.0), 0.999999)

    def _action(self, state: SagaState) -> Action | None:
        try:
            definition = self.definitions[state.saga_type].at(state.version)
        except (KeyError, DefinitionError):
            return None
        return definition.action_of(state.step_id)
