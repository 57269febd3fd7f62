"""The transport's own small types: no kafka-python type leaves ``events.transport``.

A caller names a partition with :class:`TP`, reads :class:`Record` values,
sends :class:`Outgoing` values and gets :class:`Ack` values back. kafka-python's
``TopicPartition`` is a named tuple of the same two fields, so a :class:`TP`
compares and hashes equal to it; the transport converts at its edge all the
same, so that nothing outside depends on that coincidence.
"""

from __future__ import annotations

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
