"""Fuzzing the orchestrator's decoders: the saga log, snapshots, the router's
sagaId peek and start requests. Each must answer any bytes with a value or its
one typed error; anything else would escape the guard that skips, dead-letters
or reports a bad record. Derandomized, so a failure is the same every day.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import (
    DEFINITIONS,
    HistoryCodec,
    LogRecord,
    SagaStarted,
    SagaState,
    StepCommanded,
    StepSucceeded,
    parse_start,
    start_message,
)
from actors.engine.inbound import Inbound, home_of
from actors.engine.snapshots import SnapshotStore, _Chunk, _Manifest
from actors.errors import RestoreError, SagaError
from events.errors import MessageDecodeError
from events.transport.broker import EmbeddedBroker
from events.transport.partitions import home_partition
from events.transport.publisher import KafkaMessagePublisher
from events.transport.types import TP, Record
from events.wire.messages import CommandMessage, MessageCodec
from tests.conftest import settings_for
from tests.fuzzing import documents

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
INPUT = {"userId": "u-1", "accountId": "a-1", "amount": 250, "currency": "USD"}
PARTITIONS = 6
FUZZ = settings(derandomize=True, max_examples=1_500, deadline=None)
HISTORY = HistoryCodec()
CODEC = MessageCodec()
RECORDS = [
    HISTORY.encode(
        LogRecord(
            saga_id="s-1",
            saga_type="deposit",
            seq=1,
            at=1_800_000_000_000,
            events=[
                SagaStarted(saga_id="s-1", saga_type="deposit", input=INPUT),
                StepCommanded(
                    step="verify_user", attempt=1, message_id="m-1", deadline=9
                ),
            ],
            cause="saga.requests/0/12",
        )
    ),
    HISTORY.encode(
        LogRecord(
            saga_id="s-1",
            saga_type="deposit",
            seq=3,
            at=1_800_000_000_500,
            events=[
                StepSucceeded(
                    step="process_payment",
                    attempt=1,
                    reply_id="r-2",
                    payload={"paymentId": "p-1", "fees": [{"bps": 12}]},
                )
            ],
        )
    ),
]
STATE = SagaState(
    saga_id="s-1",
    saga_type="deposit",
    input=INPUT,
    seq=3,
    step="deposit",
    attempt=1,
    replies={"process_payment": {"paymentId": "p-1"}},
)
SNAPSHOTS = [
    msgspec.json.encode(
        _Chunk[SagaState](
            format=1,
            partition=0,
            log_offset=7,
            index=0,
            total=1,
            previous=-1,
            sagas=[STATE],
            finished=["s-0"],
        )
    ),
    msgspec.json.encode(
        _Manifest(
            format=1,
            partition=0,
            log_offset=7,
            first_offset=3,
            chunks=1,
            sagas=1,
            finished=1,
            previous=-1,
        )
    ),
]
STARTS = [CODEC.encode(start_message("s-1", "deposit", INPUT, NOW))]


def record(value: bytes | None) -> Record:
    # The reader hands an empty value (a tombstone) over as b"".
    return Record("t", 0, 5, b"k", value or b"", 0)


@FUZZ
@given(documents(RECORDS))
def test_history_codec_raises_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MessageDecodeError):
        HISTORY.decode(raw)


@pytest.fixture(scope="module")
def snapshots(broker: EmbeddedBroker) -> Iterator[SnapshotStore]:
    with KafkaMessagePublisher(settings_for(broker.bootstrap)) as publisher:
        yield SnapshotStore(settings_for(broker.bootstrap), publisher)


@pytest.mark.broker
def test_snapshot_decoder_raises_only_restore_errors(
    snapshots: SnapshotStore,
) -> None:
    tp = TP("saga.snapshots", 0)

    @FUZZ
    @given(documents(SNAPSHOTS))
    def check(raw: bytes) -> None:
        with contextlib.suppress(RestoreError):
            snapshots._decode(tp, record(raw))

    check()
    with pytest.raises(RestoreError, match="refused before decoding"):
        snapshots._decode(tp, record(b"[" * 5_000 + b"]" * 5_000))
    with pytest.raises(RestoreError, match="not a snapshot record"):
        snapshots._decode(tp, record(None))


@FUZZ
@given(documents(STARTS), st.integers(0, PARTITIONS - 1))
def test_the_router_finds_a_home_for_any_unkeyed_record(
    raw: bytes, partition: int
) -> None:
    home = home_of(Inbound("saga.requests", partition, 9, None, raw), PARTITIONS)
    assert 0 <= home < PARTITIONS
    # Without a sagaId to be had, its own partition's host dead-letters it.
    assert home == partition or b'"sagaId"' in raw


def test_a_deep_unkeyed_record_stays_on_its_partition() -> None:
    deep = b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b', "sagaId": "s-9"}'
    assert home_of(Inbound("saga.requests", 4, 0, None, deep), 6) == 4
    keyed = Inbound("saga.requests", 4, 0, "s-9", deep)
    assert home_of(keyed, 6) == home_partition("s-9", 6)


@FUZZ
@given(documents(STARTS))
def test_start_requests_from_the_wire_fail_only_with_typed_errors(
    raw: bytes,
) -> None:
    try:
        message = CODEC.decode(raw)
    except MessageDecodeError:
        return
    with contextlib.suppress(SagaError):
        parse_start(message, DEFINITIONS)


# Payloads as a caller in the same process could build them, not only as JSON
# decodes them: any value, at any depth.
_anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.just(math.nan)
    | st.sets(st.integers(), max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3)
        | st.tuples(inner)
    ),
    max_leaves=20,
)


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": [value]}
    return value


@FUZZ
@given(
    st.one_of(
        _anything,
        st.fixed_dictionaries({"sagaType": _anything, "input": _anything}),
        st.fixed_dictionaries(
            {"sagaType": st.sampled_from(["deposit", "nope"]), "input": _anything}
        ),
        st.integers(1, 3_000).map(lambda d: {"sagaType": "deposit", "input": _deep(d)}),
    )
)
def test_start_payloads_built_in_process_fail_only_with_typed_errors(
    payload: Any,
) -> None:
    message = CommandMessage(
        message_id="s-1:start",
        saga_id="s-1",
        step_id="start",
        timestamp=NOW,
        target_service="saga-orchestrator",
        payload=payload,
    )
    with contextlib.suppress(SagaError):
        parse_start(message, DEFINITIONS)
