"""Read partitions from a given offset up to their end, without a consumer group.

For restoring state from a log: the reader assigns the partitions, seeks, and
stops at each partition's high watermark as reported by Fetch responses (the
end offset both Kafka and the embedded broker get right; see DESIGN.md on
ListOffsets).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from events.clients import connect, consumer_options
from events.errors import EventsError
from events.settings import KafkaSettings

#: Restores read whole partitions: fetch big slices at a time.
_FETCH_BYTES = 16 * 1024 * 1024


def read_to_end(
    settings: KafkaSettings,
    starts: Mapping[TopicPartition, int],
    *,
    timeout_s: float = 30.0,
) -> Generator[Any, None, None]:
    """Yield the records of each partition from its start offset to its end.

    Records of one partition come in offset order. The end is the high
    watermark at the first fetch that answers for the partition: records
    appended while reading may or may not be included. Raises
    :class:`EventsError` when a partition gives no answer within ``timeout_s``
    of the last progress.
    """
    if not starts:
        return
    options = consumer_options(settings, None) | {
        "max_partition_fetch_bytes": _FETCH_BYTES,
        "fetch_max_bytes": 4 * _FETCH_BYTES,
        "fetch_max_wait_ms": 50,
        "max_poll_records": 10_000,
    }
    consumer = connect(KafkaConsumer, settings, options)
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends: dict[TopicPartition, int] = {}
        pending = set(starts)
        last_progress = time.monotonic()
        while pending:
            batches = consumer.poll(timeout_ms=100)
            for tp, records in batches.items():
                end = ends.get(tp)
                for record in records:
                    if end is not None and record.offset >= end:
                        break
                    yield record
            for tp in list(pending):
                if tp not in ends:
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    ends[tp] = int(highwater)
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if batches:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout_s:
                raise EventsError(
                    f"reading {len(pending)} partition(s) to their end made no "
                    f"progress for {timeout_s:g} s (first: {min(pending)})"
                )
    except KafkaError as exc:
        raise EventsError(f"reading partitions failed: {exc}") from exc
    finally:
        consumer.close(autocommit=False)
