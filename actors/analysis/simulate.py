"""One saga replayed through a policy: the decider, fed in time order.

The saga starts when it started; the outside inputs come when they came; the
participants answer as :mod:`~actors.analysis.answers` says; a timer acts on
each deadline the policy sets, as late as the recording's timer for that
deadline did (or the recording's median lag, for a deadline it never had).
Retries draw the jitter they drew then, or a seeded random one. Nothing is
sent anywhere: the commands the decider gives are read for what they ask.

Inputs of one millisecond are taken in their recorded order, so with the
recorded policy the decider sees exactly the recorded inputs and decides
exactly what the log says.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from actors.analysis.answers import Streams
from actors.analysis.recording import RETRY, TIMEOUT, Answer, Recording
from actors.core import (
    CompensationTimedOut,
    Input,
    Reply,
    SagaDefinition,
    SagaState,
    Start,
    StepCompensated,
    StepTimedOut,
    Tick,
    Verdict,
    decide,
)
from actors.errors import DefinitionError

#: A bound on one saga's decisions, far past any real saga's: a policy that
#: loops (a step retried forever) ends at the horizon long before.
MOST_DECISIONS: Final = 100_000
#: The rank of an input the recording has no place for: after recorded ones.
UNRANKED: Final = 1 << 41


class Outcome(NamedTuple):
    saga_id: str
    saga_type: str
    status: str
    reason: str
    started_at: int
    ended_at: int | None
    #: The status when the recording ended (what the recording can confirm).
    at_end: str
    retries: int
    timeouts: int
    compensations: int
    #: Inputs the saga refused, and late successes: what its host would
    #: dead-letter.
    dead_letters: int

    @property
    def duration_ms(self) -> int | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


class Clock(NamedTuple):
    """The backtest's frame: when the recording ended, the time past which
    nothing is simulated, and the timer lag for deadlines never recorded."""

    end: int
    horizon: int
    lag: int


def simulate(
    definitions: Mapping[str, SagaDefinition],
    recording: Recording,
    streams: Streams,
    clock: Clock,
    seed: int,
) -> Outcome:
    return _Simulation(definitions, recording, streams, clock, seed).run()


class _Simulation:
    def __init__(
        self,
        definitions: Mapping[str, SagaDefinition],
        recording: Recording,
        streams: Streams,
        clock: Clock,
        seed: int,
    ) -> None:
        self.definition = definitions[recording.saga_type]
        self.recording = recording
        self.streams = streams
        self.clock = clock
        # Per saga, so a saga's draws do not depend on which others ran.
        self.rng = random.Random(f"{seed}:{recording.saga_id}")
        self.queue: list[tuple[int, int, int, Any]] = []
        self.pushed = 0
        self.state: SagaState | None = None
        self.sent: set[str] = set()
        self.ticks: set[_Due] = set()
        self.ended_at: int | None = None
        self.counts = {"retries": 0, "timeouts": 0, "compensations": 0, "dead": 0}

    def push(self, at: int, rank: int, item: Any) -> None:
        self.pushed += 1
        heapq.heappush(self.queue, (at, rank, self.pushed, item))

    def run(self) -> Outcome:
        recording = self.recording
        start = Start(
            saga_id=recording.saga_id,
            saga_type=recording.saga_type,
            input=recording.input,
            now=recording.started_at,
        )
        self.push(recording.started_at, 0, start)
        for outside in recording.outside:
            self.push(outside.at, outside.rank, outside.input)
        at_end = None
        for _ in range(MOST_DECISIONS):
            if not self.queue or self.queue[0][0] > self.clock.horizon:
                break
            now, _, _, item = heapq.heappop(self.queue)
            if at_end is None and now > self.clock.end:
                at_end = self.status
            self.take(now, item)
        ended_at = None
        state = self.state
        if state is not None and state.status.terminal:
            ended_at = self.ended_at
        return Outcome(
            saga_id=recording.saga_id,
            saga_type=recording.saga_type,
            status=self.status,
            reason=_why(state),
            started_at=recording.started_at,
            ended_at=ended_at,
            at_end=self.status if at_end is None else at_end,
            retries=self.counts["retries"],
            timeouts=self.counts["timeouts"],
            compensations=self.counts["compensations"],
            dead_letters=self.counts["dead"],
        )

    @property
    def status(self) -> str:
        return "rejected" if self.state is None else str(self.state.status)

    def take(self, now: int, item: Any) -> None:
        """Decide on one input, and schedule what the decision sets going."""
        if isinstance(item, _Due):
            self.ticks.discard(item)
            if self.state is None or item != _timer(self.state):
                return  # set for a deadline the saga has left behind
            item = Tick(saga_id=self.recording.saga_id, now=now, jitter=self.jitter())
        elif isinstance(item, _Answered):
            if item.answer.inferred and not self.waiting_on(item.step_id):
                return
            item = self.reply(now, item)
        decision = decide(self.definition, self.state, item)
        if decision.verdict in (Verdict.UNEXPECTED, Verdict.LATE):
            self.counts["dead"] += 1
            return
        if not decision.events:
            return
        before = self.state
        self.state = state = decision.state
        assert state is not None
        for event in decision.events:
            if isinstance(event, StepTimedOut | CompensationTimedOut):
                self.counts["timeouts"] += 1
            elif isinstance(event, StepCompensated):
                self.counts["compensations"] += 1
        for send in decision.commands:
            self.sent_command(now, send.message.step_id, send.message.message_id)
        if state.status.terminal:
            if before is None or not before.status.terminal:
                self.ended_at = now
            return
        if state.deadline:
            self.schedule_timer(now, state)

    def sent_command(self, now: int, step_id: str, message_id: str) -> None:
        if not message_id.endswith(":1"):
            self.counts["retries"] += 1
        if step_id in self.sent:
            return  # its stream is answered already (see recording.Answer)
        self.sent.add(step_id)
        answers = self.streams.answers(
            self.recording, step_id, now, self.clock.end, self.rng
        )
        for answer in answers:
            self.push(now + answer.after_ms, answer.rank, _Answered(step_id, answer))

    def schedule_timer(self, now: int, state: SagaState) -> None:
        timer = _timer(state)
        if timer in self.ticks:
            return
        key = (state.step_id, state.attempt, timer.kind)
        lag, rank = self.recording.lags.get(key, (self.clock.lag, UNRANKED))
        self.ticks.add(timer)
        self.push(max(now, state.deadline + lag), rank, timer)

    def waiting_on(self, step_id: str) -> bool:
        state = self.state
        return (
            state is not None and not state.status.terminal and state.step_id == step_id
        )

    def jitter(self) -> float:
        """The draw a retry decided now uses: the recorded one for the
        command the saga waits on, else a seeded one."""
        state = self.state
        if state is not None:
            draw = self.recording.draws.get((state.step_id, state.attempt))
            if draw is not None:
                return draw
        return self.rng.random()

    def reply(self, now: int, item: _Answered) -> Input:
        step_id, answer = item
        return Reply(
            saga_id=self.recording.saga_id,
            topic=self.reply_topic(step_id),
            step_id=step_id,
            message_id=answer.reply_id,
            success=answer.success,
            payload=answer.payload,
            error=answer.error,
            now=now,
            jitter=self.jitter(),
        )

    def reply_topic(self, step_id: str) -> str:
        """The topic the policy's action for ``step_id`` answers on."""
        version = 1 if self.state is None else self.state.version
        try:
            action = self.definition.at(version).action_of(step_id)
        except DefinitionError:
            return ""
        return "" if action is None else action.reply_topic


class _Due(NamedTuple):
    """A timer going off, for the deadline it was set for: like the engine's
    timers, it acts only on the deadline the saga still has."""

    step_id: str
    attempt: int
    kind: str
    deadline: int


def _timer(state: SagaState) -> _Due:
    kind = RETRY if state.retrying else TIMEOUT
    return _Due(state.step_id, state.attempt, kind, state.deadline)


class _Answered(NamedTuple):
    step_id: str
    answer: Answer


def _why(state: SagaState | None) -> str:
    """Why the saga is where it is: its reason, or the step that turned it
    back (a saga compensated after a timeout logs no reason of its own)."""
    if state is None:
        return ""
    if state.reason:
        return state.reason
    if state.doubtful:
        return f"{state.doubtful} unanswered: given up in doubt"
    return ""
