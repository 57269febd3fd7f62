"""The transport's own small types: no kafka-python type leaves ``events.transport``.

A caller names a partition with :class:`TP`, reads :class:`Record` values,
sends :class:`Outgoing` values and gets :class:`Ack` values back. kafka-python's
``TopicPartition`` is a named tuple of the same two fields, so a :class:`TP`
compares and hashes equal to it; the transport converts at its edge all the
same, so that nothing outside depends on that coincidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class TP(NamedTuple):
    """A topic partition."""

    topic: str
    partition: int


class Record(NamedTuple):
    """One record as it sits in a partition."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    #: Milliseconds since the epoch, as the producer or the broker stamped it.
    timestamp: int

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class Outgoing(NamedTuple):
    """One record to send: bytes as they are, keyed, to a partition or the key's."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None


class Ack(NamedTuple):
    """Where the broker put an acknowledged record."""

    topic: str
    partition: int
    offset: int


class LogIdentity(NamedTuple):
    """Which cluster, and which incarnation of each topic, a component reads.

    A topic deleted and created again, or a broker that restarted empty and
    re-created its topics, has new topic ids (and, on Kafka, a broker whose data
    directory was lost is formatted with a new cluster id): offsets read before
    mean nothing there.
    """

    cluster_id: str
    #: topic -> its id ("" where the broker reports none)
    topic_ids: Mapping[str, str]

    def changes(self, now: LogIdentity) -> list[str]:
        """What differs in ``now`` from this identity (empty when nothing)."""
        found = []
        if self.cluster_id and now.cluster_id and self.cluster_id != now.cluster_id:
            found.append(f"cluster id was {self.cluster_id}, now {now.cluster_id}")
        for topic, was in sorted(self.topic_ids.items()):
            current = now.topic_ids.get(topic, "")
            if _known(was) and _known(current) and was != current:
                found.append(
                    f"topic {topic} was id {was}, now {current} "
                    "(deleted and created again)"
                )
        return found


#: What some brokers and metadata versions report for "no topic id".
_NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


def _known(topic_id: str) -> bool:
    return bool(topic_id) and topic_id != _NO_TOPIC_ID
