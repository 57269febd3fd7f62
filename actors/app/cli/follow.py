"""Following one saga on the command line: its events as lines, printed as they
are appended, until it ends; and the exit code each outcome gives.

Shared by ``saga show`` (``--follow``), ``saga start --wait`` and the
operator's ``saga cancel`` and ``saga retry`` (``--wait``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec

from actors.app.client import SagaClient
from actors.core import TAG_OF, LogRecord, SagaState, Status

#: The exit code of a command that waited for a saga to end, by its outcome.
OUTCOME_EXIT: Final = {
    Status.COMPLETED: 0,
    Status.COMPENSATED: 3,
    Status.REJECTED: 4,
    Status.FAILED: 5,
}
#: The saga had not ended when the wait ran out (as timeout(1) exits).
STILL_RUNNING_EXIT: Final = 124

EXIT_CODES_HELP: Final = (
    "exit code: the saga's outcome: 0 completed, 3 compensated, 4 rejected, "
    f"5 failed, {STILL_RUNNING_EXIT} still running when --timeout ran out"
)


def event_lines(records: Iterable[LogRecord], started: int) -> Iterator[str]:
    """One line per saga event: its number, its time since ``started`` (the
    saga's first record, epoch ms), its tag and its fields."""
    for record in records:
        for seq, event in enumerate(record.events, record.seq):
            fields = {
                k: v
                for k, v in msgspec.to_builtins(event).items()
                if k not in ("type", "sagaId", "sagaType")
            }
            detail = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
            yield (
                f"{seq:>4}  +{record.at - started:>7} ms  "
                f"{TAG_OF[type(event)]:<24} {detail}"
            ).rstrip()


def follow(
    client: SagaClient,
    saga_id: str,
    *,
    timeout_s: float,
    after: int = 0,
) -> SagaState | None:
    """Print the saga's events after event ``after`` as they are appended,
    until it ends after that event or ``timeout_s`` pass; returns its state
    then (``None`` if it never appeared)."""
    begun = time.monotonic()
    deadline = begun + timeout_s
    started: int | None = None
    waiting_said = False
    with client.watch(saga_id) as watch:
        while True:
            for record in watch.poll(timeout_ms=200):
                started = record.at if started is None else started
                if record.seq + len(record.events) - 1 > after:
                    fresh = _events_after(record, after)
                    for line in event_lines([fresh], started):
                        print(line, flush=True)
            state = watch.state
            if (
                state is not None
                and state.status.terminal
                and state.seq > after
                and watch.caught_up
            ):
                return state
            if time.monotonic() >= deadline:
                return state
            # A saga that exists shows within a fetch or two; after that, say
            # why nothing comes.
            if state is None and not waiting_said and time.monotonic() > begun + 2:
                waiting_said = True
                print(
                    f"waiting for saga {saga_id} to appear in saga.events "
                    "(requests are applied asynchronously)",
                    file=sys.stderr,
                    flush=True,
                )


def outcome_line(state: SagaState) -> str:
    reason = f": {state.reason}" if state.reason else ""
    return f"saga {state.saga_id} ({state.saga_type}): {state.status}{reason}"


def _events_after(record: LogRecord, after: int) -> LogRecord:
    """``record`` without the events numbered ``after`` or below."""
    skip = max(0, after - record.seq + 1)
    if not skip:
        return record
    return msgspec.structs.replace(
        record, seq=record.seq + skip, events=record.events[skip:]
    )
