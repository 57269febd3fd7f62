"""The Kafka wire reading the long-poll relay steers fetches by, checked
against kafka-python's own encoding of every version it reads."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.producer.produce import ProduceRequest

from events.transport import frames


def _framed(message: Any, version: int) -> bytes:
    message.with_header(correlation_id=9)
    raw: bytes = message.encode(version=version, header=True, framed=True)
    return raw


def _fetch_request(version: int) -> bytes:
    topic = FetchRequest.FetchTopic
    partitions = [
        topic.FetchPartition(partition=p, fetch_offset=p + 3, partition_max_bytes=100)
        for p in (2, 4)
    ]
    request = FetchRequest(
        max_wait_ms=321,
        min_bytes=1,
        max_bytes=1000,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            topic(topic="saga.events", partitions=partitions),
            topic(topic="payment.events.processed", partitions=partitions[:1]),
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    return _framed(request, version)


@pytest.mark.parametrize("version", frames.FETCH_VERSIONS)
def test_a_fetch_request_names_its_wait_and_partitions(version: int) -> None:
    raw = _fetch_request(version)
    head = frames.request(raw)
    assert (head.api_key, head.version) == (frames.FETCH, version)
    wanted = frames.fetch(raw, head)
    assert wanted == frames.Fetch(
        max_wait_ms=321,
        min_bytes=1,
        offsets={
            ("saga.events", 2): 5,
            ("saga.events", 4): 7,
            ("payment.events.processed", 2): 5,
        },
    )
    assert wanted.partitions == {
        ("saga.events", 2),
        ("saga.events", 4),
        ("payment.events.processed", 2),
    }
    shorter = frames.with_wait(raw, head, 1)
    decoded = FetchRequest.decode(shorter[4:], version=version, header=True)
    original = FetchRequest.decode(raw[4:], version=version, header=True)
    assert decoded.max_wait_ms == 1
    assert decoded.topics == original.topics


def test_a_fetch_version_it_does_not_read_is_left_alone() -> None:
    raw = _fetch_request(13)
    assert frames.fetch(raw, frames.request(raw)) is None


@pytest.mark.parametrize("version", frames.PRODUCE_VERSIONS)
def test_a_produce_request_names_its_acks_and_partitions(version: int) -> None:
    topic = ProduceRequest.TopicProduceData
    request = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            topic(
                name="account.commands.deposit",
                partition_data=[
                    topic.PartitionProduceData(index=3, records=b"\x00" * 20),
                    topic.PartitionProduceData(index=0, records=None),
                ],
            )
        ],
    )
    raw = _framed(request, version)
    written = frames.produce(raw, frames.request(raw))
    assert written == frames.Produce(
        acks=-1,
        partitions=frozenset(
            {("account.commands.deposit", 3), ("account.commands.deposit", 0)}
        ),
    )


def _fetch_response(version: int, records: bytes | None, error: int = 0) -> bytes:
    data = FetchResponse.FetchableTopicResponse.PartitionData
    response = FetchResponse(
        throttle_time_ms=0,
        error_code=0,
        session_id=0,
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic="saga.requests",
                partitions=[
                    data(
                        partition_index=0,
                        error_code=0,
                        high_watermark=10,
                        last_stable_offset=10,
                        log_start_offset=0,
                        aborted_transactions=[
                            data.AbortedTransaction(producer_id=1, first_offset=2)
                        ],
                        preferred_read_replica=-1,
                        records=None,
                    ),
                    data(
                        partition_index=1,
                        error_code=error,
                        high_watermark=10,
                        last_stable_offset=10,
                        log_start_offset=0,
                        aborted_transactions=None,
                        preferred_read_replica=-1,
                        records=records,
                    ),
                ],
            )
        ],
    )
    body: bytes = response.encode(version=version)
    # The response header: the correlation id, and tagged fields (none) once
    # the version is flexible.
    head = (9).to_bytes(4, "big") + (b"\x00" if version >= 12 else b"")
    return (len(head) + len(body)).to_bytes(4, "big") + head + body


@pytest.mark.parametrize("version", frames.FETCH_VERSIONS)
def test_a_fetch_response_says_whether_it_carries_anything(version: int) -> None:
    empty = frames.fetched(_fetch_response(version, None), version)
    assert not empty.anything
    assert empty.ends == {("saga.requests", 0): 10, ("saga.requests", 1): 10}
    assert not frames.fetched(_fetch_response(version, b""), version).anything
    assert frames.fetched(_fetch_response(version, b"\x01" * 70), version).anything
    # An error is answered at once too: the client must hear it.
    assert frames.fetched(_fetch_response(version, None, error=6), version).anything


def test_an_empty_answer_below_the_high_watermark_is_behind() -> None:
    empty = frames.fetched(_fetch_response(12, None), 12)
    at = {("saga.requests", 0): 10, ("saga.requests", 1): 10}
    assert not empty.behind(frames.Fetch(100, 1, at))
    assert empty.behind(frames.Fetch(100, 1, at | {("saga.requests", 1): 4}))


def test_a_message_shorter_than_its_layout_is_refused() -> None:
    raw = _fetch_request(12)
    with pytest.raises(frames.FrameError):
        frames.fetch(raw[:40], frames.request(raw))
