"""Claims, epochs and the fence every reader of ``saga.events`` applies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors.core import (
    Claim,
    Fence,
    LogCodec,
    LogRecord,
    SagaState,
    Status,
    replay,
)
from actors.errors import RestoreError
from tests.actors.core.sagas import Run, at, claim, handed_over

GOLDEN = Path(__file__).parent / "golden"
CODEC = LogCodec()


def fold_fenced(
    entries: list[LogRecord | Claim], fence: Fence | None = None
) -> SagaState | None:
    fence = fence or Fence()
    state = None
    for entry in entries:
        if fence.admit(0, entry):
            assert isinstance(entry, LogRecord)
            state = replay(state, entry)
    return state


def test_a_replaced_owners_record_is_skipped_not_folded() -> None:
    entries, owners, zombies = handed_over()
    fence = Fence()
    state = fold_fenced(entries, fence)
    assert state == owners and state != zombies
    assert fence.skipped == 1
    assert fence.epoch(0) == 2 and fence.claim(0) == claim(2)


def test_without_the_fence_the_replaced_owners_event_would_win() -> None:
    """Why the fence runs before the sequence check: by ``seq`` alone, the
    zombie's event 2 is read first and hides the owner's."""
    entries, owners, zombies = handed_over()
    state = None
    for entry in entries:
        if isinstance(entry, LogRecord):
            state = replay(state, entry)
    assert state == zombies != owners


def test_a_claim_of_an_epoch_not_above_the_one_in_force_is_void() -> None:
    entries, owners, _ = handed_over()
    void = [claim(2, owner="host-c"), claim(1, owner="host-c")]
    fence = Fence()
    assert fold_fenced([*entries[:3], *void, *entries[3:]], fence) == owners
    assert fence.claim(0) == claim(2)


def test_a_record_above_the_epoch_in_force_means_a_lost_claim() -> None:
    entries, _, _ = handed_over()
    with pytest.raises(RestoreError, match="no claim of a higher one"):
        fold_fenced([entries[1], entries[4]])


def test_a_reader_starting_from_a_snapshot_starts_at_its_epoch() -> None:
    entries, owners, _ = handed_over()
    _, started, *tail = entries
    assert isinstance(started, LogRecord)
    state = replay(None, started)
    fence = Fence({0: 1})
    for entry in tail:
        if fence.admit(0, entry):
            assert isinstance(entry, LogRecord)
            state = replay(state, entry)
    assert state == owners
    with pytest.raises(RestoreError, match="no claim"):
        fold_fenced([started])  # from the log's start, epoch 1 has no claim


def test_a_reader_joining_mid_log_takes_the_epoch_it_meets_until_a_claim() -> None:
    entries, _, _ = handed_over()
    _, started, _, succeeded, timed_out = entries
    fence = Fence(joined=True)
    assert fence.admit(0, succeeded)  # epoch 1: all it knows
    assert fence.admit(0, timed_out)  # epoch 2: a claim came before it joined
    assert not fence.admit(0, succeeded)  # now epoch 1 is a replaced owner's
    fence.admit(0, claim(3))
    with pytest.raises(RestoreError, match="no claim"):
        fence.admit(0, at(started, 4))  # after a claim it met, strict again
    assert Fence(joined=True).admit(5, started)
    assert isinstance(started, LogRecord) and Fence().admit(5, at(started, 0))


def test_records_from_before_claims_read_as_epoch_zero() -> None:
    run = Run()
    run.start()
    [raw] = run.log
    record = CODEC.decode(raw)
    assert isinstance(record, LogRecord) and record.epoch == 0
    assert Fence().read(0, raw) == record


def test_a_claim_is_told_from_a_record_by_its_first_bytes() -> None:
    raw = CODEC.encode(claim(7))
    assert raw.startswith(b'{"kind":"claim"')
    assert CODEC.decode(raw) == claim(7)
    assert Fence().read(0, raw) is None


def test_golden_handover_log_still_reads_to_the_new_owners_state() -> None:
    """A stored log with claims and a replaced owner's record: a change to the
    claim's or the record's wire format, or to the rule, breaks this."""
    entries, owners, _ = handed_over()
    path = GOLDEN / "handover.jsonl"
    if os.environ.get("SAGA_UPDATE_GOLDEN") == "1":
        path.write_bytes(b"".join(CODEC.encode(e) + b"\n" for e in entries))
    stored = path.read_bytes().splitlines()
    assert [CODEC.decode(line) for line in stored] == entries
    fence = Fence()
    state = None
    for line in stored:
        record = fence.read(0, line)
        if record is not None:
            state = replay(state, record)
    assert state == owners
    assert state is not None and state.status is Status.RUNNING
