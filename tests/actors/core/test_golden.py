"""Golden histories: logs recorded by an earlier version, replayed by this one.

A change that breaks old logs (a renamed tag, a field without a default, a
different decision for the same inputs) fails here. When a change to decisions
is intended, regenerate with ``SAGA_UPDATE_GOLDEN=1 python -m pytest
tests/actors/core/test_golden.py`` and review the diff: never regenerate to silence
a decode failure, because stored logs in the field look like these files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from actors.core import HistoryCodec, Status, Tick, fold
from tests.actors.core.sagas import Run, reply_to

GOLDEN = Path(__file__).parent / "golden"


def completed(run: Run) -> None:
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_090, paymentId="p-1"))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_130, balance=1250))


def compensated(run: Run) -> None:
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_090, paymentId="p-2"))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_130, success=False))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_170, refundId="r-2"))


def rejected(run: Run) -> None:
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040, success=False))


def retried_then_failed(run: Run) -> None:
    """A timed-out payment retried, the deposit refused, the refund refused
    until its attempts run out (a refusal, unlike silence, is given up on)."""
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    run.feed(Tick(saga_id=run.saga_id, now=1_700_000_010_040, jitter=0.25))
    run.feed(Tick(saga_id=run.saga_id, now=1_700_000_010_600))
    run.feed(reply_to(run.sent[-1], 1_700_000_010_700, paymentId="p-4"))
    run.feed(reply_to(run.sent[-1], 1_700_000_010_800, success=False))
    now = 1_700_000_010_800
    while run.state is not None and not run.state.status.terminal:
        now += 60_000
        if run.state.retrying:
            run.feed(Tick(saga_id=run.saga_id, now=now, jitter=0.5))
        else:
            run.feed(reply_to(run.sent[-1], now, success=False))


def deposit_in_doubt(run: Run) -> None:
    """The pivot unanswered past its last attempt, asked again until its
    first attempt's success arrives: completed, never refunded."""
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    run.feed(reply_to(run.sent[-1], 1_700_000_000_090, paymentId="p-5"))
    deposit = run.sent[-1]
    now = 1_700_000_000_090
    for _ in range(8):
        now += 60_000
        run.feed(Tick(saga_id=run.saga_id, now=now, jitter=0.5))
    run.feed(reply_to(deposit, now + 40, balance=250))


def cancelled(run: Run) -> None:
    """An operator's cancel while the payment is in flight: the payment is
    given up on in doubt and refunded."""
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    run.cancel(1_700_000_000_050, reason="customer withdrew")
    run.feed(reply_to(run.sent[-1], 1_700_000_000_090, refundId="r-6"))


def failed_then_retried(run: Run) -> None:
    """A saga failed by a refund refused to the end, then retried by an
    operator: the refund goes out again and succeeds."""
    retried_then_failed(run)
    now = run.records()[-1].at + 60_000
    run.retry(now, reason="payment service fixed")
    run.feed(reply_to(run.sent[-1], now + 40, refundId="r-7"))


def held_then_released(run: Run) -> None:
    """The payment's reply dead-lettered: the saga held behind it keeps a
    duplicate reply that came meanwhile, and goes on when an operator replays
    the fixed reply."""
    run.start(now=1_700_000_000_000)
    run.feed(reply_to(run.sent[-1], 1_700_000_000_040))
    payment = run.sent[-1]
    run.hold(1_700_000_000_090, origin="payment.events.process/0/12")
    run.feed(reply_to(payment, 1_700_000_000_095, paymentId="p-8"))
    fixed = reply_to(payment, 1_700_000_000_100, paymentId="p-8")
    run.release(
        1_700_000_000_200,
        how="replayed",
        reply=msgspec.structs.replace(fixed, message_id="fixed:" + fixed.message_id),
        origin="payment.events.process/0/12",
    )
    run.feed(reply_to(run.sent[-1], 1_700_000_000_240, balance=250))


SCENARIOS: dict[str, tuple[Callable[[Run], None], Status]] = {
    "completed": (completed, Status.COMPLETED),
    "compensated": (compensated, Status.COMPENSATED),
    "rejected": (rejected, Status.REJECTED),
    "retried_then_failed": (retried_then_failed, Status.FAILED),
    "in_doubt": (deposit_in_doubt, Status.COMPLETED),
    "cancelled": (cancelled, Status.COMPENSATED),
    "failed_then_retried": (failed_then_retried, Status.COMPENSATED),
    "held_then_released": (held_then_released, Status.COMPLETED),
}

#: Logs written by earlier rules, which today's core no longer decides the same
#: way: they must still decode, re-encode (byte for byte but for the fields
#: added since) and fold to their end.
OLD_LOGS: dict[str, Status] = {
    # Until the doubt rule, a compensation unanswered to its last attempt
    # failed the saga (compensation_timed_out with retryAt null).
    "v1_deposit_compensation_unanswered_failed": Status.FAILED,
}

#: Fields a log record gained after the first golden logs, at their defaults.
ADDED_SINCE_V1 = {"epoch": 0}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_history_still_decodes_folds_and_is_decided_the_same(
    name: str,
) -> None:
    script, status = SCENARIOS[name]
    run = Run(saga_id=f"golden-{name}")
    script(run)
    path = GOLDEN / f"deposit_{name}.jsonl"
    if os.environ.get("SAGA_UPDATE_GOLDEN") == "1":
        path.write_bytes(b"".join(raw + b"\n" for raw in run.log))
    stored = path.read_bytes().splitlines()

    codec = HistoryCodec()
    records = [codec.decode(line) for line in stored]
    state = fold(e for r in records for e in r.events)
    assert state.status is status
    # Re-encoding is byte-identical: tags and field names are unchanged.
    assert [codec.encode(r) for r in records] == stored
    # Today's core decides exactly what the stored log says it decided.
    assert run.log == stored, f"decisions changed for {path.name}"


@pytest.mark.parametrize("name", sorted(OLD_LOGS))
def test_logs_of_earlier_rules_still_decode_and_fold(name: str) -> None:
    stored = (GOLDEN / f"{name}.jsonl").read_bytes().splitlines()
    codec = HistoryCodec()
    records = [codec.decode(line) for line in stored]
    # Re-encoded, they differ only by the fields added since, at their defaults.
    assert [json.loads(codec.encode(r)) for r in records] == [
        {**json.loads(line), **ADDED_SINCE_V1} for line in stored
    ]
    assert fold(e for r in records for e in r.events).status is OLD_LOGS[name]
