"""The rows of ``sagas`` and ``steps``, folded from a batch's typed saga events.

Pure: no DuckDB here. :class:`OpenRows` keeps the rows still changing (sagas
not ended, steps not answered) in memory, folds each batch's events into them
and says which rows the batch changed; :mod:`projections.writer` writes those
and the events themselves (:class:`LoggedEvent`) in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from actors.core import (
    COMPENSATE,
    OUTCOMES,
    TAG_OF,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    RetryRequested,
    SagaEvent,
    SagaStarted,
    Status,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)

#: Each answer to a command, and the step outcome it records.
_ANSWERS: dict[type, str] = {
    StepSucceeded: "succeeded",
    StepFailed: "failed",
    StepTimedOut: "timed_out",
    StepCompensated: "succeeded",
    CompensationFailed: "failed",
    CompensationTimedOut: "timed_out",
}
#: The events about undoing a step: their ``steps`` rows are ``<step>.compensate``.
_COMPENSATION = (
    CompensationCommanded,
    StepCompensated,
    CompensationFailed,
    CompensationTimedOut,
)
#: The statuses of sagas that ended: their rows are final.
ENDED: tuple[str, ...] = tuple(s.value for s in Status if s.terminal)


#: The ``sagas`` columns a row in memory is rebuilt from (see ``SagaRow.of``).
SAGA_COLUMNS = (
    "saga_id, saga_type, status, epoch_ms(started_at), current_step, retries, "
    "compensations, epoch_ms(updated_at), reason, last_error"
)


class SagaRow:
    """A ``sagas`` row being built: kept in memory until the saga ends."""

    __slots__ = (
        "compensations",
        "current_step",
        "ended_at",
        "last_error",
        "reason",
        "retries",
        "saga_type",
        "started_at",
        "status",
        "updated_at",
    )

    def __init__(self, saga_type: str, started_at: int) -> None:
        self.saga_type = saga_type
        self.status: str = Status.RUNNING
        self.started_at = started_at
        self.ended_at: int | None = None
        self.current_step: str | None = None
        self.retries = 0
        self.compensations = 0
        self.updated_at = started_at
        self.reason: str | None = None
        self.last_error: str | None = None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> SagaRow:
        """From a ``sagas`` row selected as :data:`SAGA_COLUMNS`."""
        saga = cls(row[1], row[3])
        saga.status, saga.current_step = row[2], row[4]
        saga.retries, saga.compensations = row[5], row[6]
        saga.updated_at = row[3] if row[7] is None else row[7]
        saga.reason, saga.last_error = row[8], row[9]
        return saga

    def row(self, saga_id: str) -> tuple[Any, ...]:
        duration = None if self.ended_at is None else self.ended_at - self.started_at
        return (
            saga_id,
            self.saga_type,
            self.status,
            self.started_at,
            self.ended_at,
            duration,
            self.current_step,
            self.retries,
            self.compensations,
            self.updated_at,
            self.reason,
            self.last_error,
        )


#: A ``steps`` row's key: saga, step (``<step>.compensate`` for undoing it),
#: attempt.
StepKey = tuple[str, str, int]


class OpenRows:
    """The ``sagas`` rows of sagas still going and the ``steps`` rows still
    awaiting their answer (when each was commanded, epoch ms)."""

    def __init__(self) -> None:
        self.sagas: dict[str, SagaRow] = {}
        self.steps: dict[StepKey, int] = {}

    def fold(
        self, events: list[LoggedEvent], reopen: Callable[[str], SagaRow | None]
    ) -> tuple[dict[str, tuple[Any, ...]], dict[StepKey, tuple[Any, ...]]]:
        """The ``sagas`` and ``steps`` rows a batch's events change, from the
        rows still open. ``reopen`` reads an ended saga's row back (an operator's
        retry takes a failed saga back up)."""
        sagas: dict[str, tuple[Any, ...]] = {}
        steps: dict[StepKey, tuple[Any, ...]] = {}
        for saga_id, _seq, saga_type, at, event, _, _ in events:
            saga = self.sagas.get(saga_id)
            if saga is None:
                # An ended saga's row is final, unless an operator's retry
                # takes a failed saga back up: then it goes on from its row.
                reopened = None if isinstance(event, SagaStarted) else reopen(saga_id)
                saga = self.sagas[saga_id] = reopened or SagaRow(saga_type, at)
            saga.updated_at = at
            error = _error_of(event)
            if error is not None:
                saga.last_error = error
            match event:
                case (
                    StepCommanded(step=step, attempt=attempt)
                    | CompensationCommanded(step=step, attempt=attempt)
                ):
                    saga.current_step = step
                    if attempt > 1:
                        saga.retries += 1
                    if isinstance(event, CompensationCommanded):
                        saga.status = Status.COMPENSATING
                    key = (saga_id, _step_id(event, step), attempt)
                    self.steps[key] = at
                    steps[key] = (saga_id, key[1], attempt, at, None, None, None)
                case (
                    StepSucceeded(step=step, attempt=attempt)
                    | StepFailed(step=step, attempt=attempt)
                    | StepTimedOut(step=step, attempt=attempt)
                    | StepCompensated(step=step, attempt=attempt)
                    | CompensationFailed(step=step, attempt=attempt)
                    | CompensationTimedOut(step=step, attempt=attempt)
                ):
                    saga.current_step = step
                    if isinstance(event, StepCompensated):
                        saga.compensations += 1
                    key = (saga_id, _step_id(event, step), attempt)
                    commanded = self.steps.get(key)
                    if commanded is not None:
                        steps[key] = (
                            saga_id, key[1], attempt, commanded, at, at - commanded,
                            _ANSWERS[type(event)],
                        )  # fmt: skip
                case RetryRequested():
                    saga.status = Status.COMPENSATING
                    saga.ended_at = saga.reason = None
                case _ if type(event) in OUTCOMES:
                    saga.status = OUTCOMES[type(event)]
                    saga.ended_at = at
                    saga.reason = getattr(event, "reason", None)
            sagas[saga_id] = saga.row(saga_id)
        return sagas, steps

    def settle(
        self,
        sagas: dict[str, tuple[Any, ...]],
        steps: dict[StepKey, tuple[Any, ...]],
    ) -> None:
        """Forget the rows that became final once they are written: ended
        sagas, answered steps."""
        for saga_id, row in sagas.items():
            if row[2] in ENDED:
                self.sagas.pop(saga_id, None)
        for key, row in steps.items():
            if row[4] is not None:
                self.steps.pop(key, None)


class LoggedEvent(NamedTuple):
    """One saga event of a batch, typed, with where it sits in its saga's log."""

    saga_id: str
    seq: int
    saga_type: str
    at: int
    event: SagaEvent
    #: Where its log record sits on ``saga.events``.
    partition: int
    offset: int

    @property
    def row(self) -> tuple[Any, ...]:
        """Its ``saga_events`` row (``data`` is the event as JSON)."""
        data = _JSON.encode(self.event).decode()
        tag = TAG_OF[type(self.event)]
        return (
            self.saga_id, self.seq, self.saga_type, tag, self.at, data,
            self.partition, self.offset,
        )  # fmt: skip


_JSON = msgspec.json.Encoder()


def _step_id(event: SagaEvent, step: str) -> str:
    return step + COMPENSATE if isinstance(event, _COMPENSATION) else step


def _error_of(event: SagaEvent) -> str | None:
    """What a step's event says went wrong (``sagas.last_error``; the schema's
    backfill computes the same from ``saga_events``), or ``None``."""
    match event:
        case StepFailed(error=error) | CompensationFailed(error=error):
            return error
        case (
            StepTimedOut(step=step, attempt=attempt)
            | CompensationTimedOut(step=step, attempt=attempt)
        ):
            return f"{_step_id(event, step)} timed out (attempt {attempt})"
    return None
