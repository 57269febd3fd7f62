"""The saga core: pure, deterministic, no I/O.

Ray, Kafka and DuckDB never come in here (an import contract enforces it), nor
does the clock: time, jitter and ids arrive inside the inputs, so replaying a
saga's log reaches the same state and the same decisions.

- :mod:`~actors.core.saga_events`: the facts of a saga's life (the wire format
  of ``saga.events``) and the log record that holds one decision's events;
- :mod:`~actors.core.state`: a saga's state as the fold of its events
  (``evolve``, ``replay``, ``fold``);
- :mod:`~actors.core.inputs`: what the decider takes and gives back (the
  inputs, ``Decision``, ``Send``);
- :mod:`~actors.core.decide`: the decider, ``decide(definition, state, input)
  -> Decision(events, commands)``;
- :mod:`~actors.core.ownership`: who may write a partition of the log (claims,
  epochs) and the rule every reader of it applies (``Fence``);
- :mod:`~actors.core.definitions`: saga types as data (steps, compensations,
  timeouts, retry policies, payload templates);
- :mod:`~actors.core.catalog`: the saga types this orchestrator runs;
- :mod:`~actors.core.requests`: the requests on ``saga.requests``: starts,
  and the operator's cancels and retries.
"""

from actors.core.catalog import DEFINITIONS, DEPOSIT
from actors.core.decide import decide, late_reason, pending_command
from actors.core.definitions import (
    Action,
    InputType,
    RetryPolicy,
    SagaDefinition,
    Step,
    render,
)
from actors.core.inputs import (
    Cancel,
    Decision,
    Hold,
    Input,
    Release,
    Reply,
    Retry,
    Send,
    Start,
    Tick,
    Verdict,
)
from actors.core.ownership import Claim, Fence, LogCodec
from actors.core.requests import (
    CANCEL_STEP,
    ORCHESTRATOR,
    RELEASE_STEP,
    RETRY_STEP,
    START_STEP,
    OperatorRequest,
    ReleaseRequest,
    StartRequest,
    check_input,
    operator_message,
    parse_operator,
    parse_release,
    parse_start,
    release_message,
    start_message,
)
from actors.core.saga_events import (
    LOG_MAX_DEPTH,
    OUTCOMES,
    TAG_OF,
    TERMINAL_EVENTS,
    AnySagaEvent,
    CancelRequested,
    CompensationCommanded,
    CompensationFailed,
    CompensationTimedOut,
    HeldReplyRefused,
    HistoryCodec,
    HoldReleased,
    LogRecord,
    ReplyHeld,
    RetryRequested,
    SagaCompensated,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaHeld,
    SagaRejected,
    SagaStarted,
    StepCommanded,
    StepCompensated,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from actors.core.state import (
    COMPENSATE,
    SagaState,
    Status,
    evolve,
    fold,
    message_id,
    replay,
)

__all__ = [
    "CANCEL_STEP",
    "COMPENSATE",
    "DEFINITIONS",
    "DEPOSIT",
    "LOG_MAX_DEPTH",
    "ORCHESTRATOR",
    "OUTCOMES",
    "RELEASE_STEP",
    "RETRY_STEP",
    "START_STEP",
    "TAG_OF",
    "TERMINAL_EVENTS",
    "Action",
    "AnySagaEvent",
    "Cancel",
    "CancelRequested",
    "Claim",
    "CompensationCommanded",
    "CompensationFailed",
    "CompensationTimedOut",
    "Decision",
    "Fence",
    "HeldReplyRefused",
    "HistoryCodec",
    "Hold",
    "HoldReleased",
    "Input",
    "InputType",
    "LogCodec",
    "LogRecord",
    "OperatorRequest",
    "Release",
    "ReleaseRequest",
    "Reply",
    "ReplyHeld",
    "Retry",
    "RetryPolicy",
    "RetryRequested",
    "SagaCompensated",
    "SagaCompleted",
    "SagaDefinition",
    "SagaEvent",
    "SagaFailed",
    "SagaHeld",
    "SagaRejected",
    "SagaStarted",
    "SagaState",
    "Send",
    "Start",
    "StartRequest",
    "Status",
    "Step",
    "StepCommanded",
    "StepCompensated",
    "StepFailed",
    "StepSucceeded",
    "StepTimedOut",
    "Tick",
    "Verdict",
    "check_input",
    "decide",
    "evolve",
    "fold",
    "late_reason",
    "message_id",
    "operator_message",
    "parse_operator",
    "parse_release",
    "parse_start",
    "pending_command",
    "release_message",
    "render",
    "replay",
    "start_message",
]
