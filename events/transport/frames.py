"""Just enough of the Kafka wire format to steer fetches: read a request's
header, the partitions a fetch or a produce names, a fetch's wait, and whether
a fetch's response carries records.

Everything else is relayed as bytes. A version this module does not know is
reported as such (``None``), and the caller relays the message untouched:
nothing here may change what a client and the broker say to each other beyond
a fetch's wait.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

FETCH = 1
PRODUCE = 0

#: The versions whose layout this module reads (topic names, not ids).
FETCH_VERSIONS = range(4, 13)
PRODUCE_VERSIONS = range(3, 13)
_FLEXIBLE = {FETCH: 12, PRODUCE: 9}

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")

#: (topic, partition)
Partition = tuple[str, int]


class FrameError(ValueError):
    """A message shorter or other than its version's layout."""


class Request(NamedTuple):
    api_key: int
    version: int
    #: Where the body starts, after the size prefix and the header.
    body: int

    @property
    def flexible(self) -> bool:
        first = _FLEXIBLE.get(self.api_key)
        return first is not None and self.version >= first


def request(frame: bytes) -> Request:
    """The header of ``frame`` (the 4-byte size prefix included)."""
    api_key, version = struct.unpack_from(">hh", frame, 4)
    pos = 12  # size, api_key, api_version, correlation_id
    (length,) = _INT16.unpack_from(frame, pos)
    pos += 2 + max(length, 0)  # client_id: a nullable INT16 string, always
    head = Request(api_key, version, pos)
    if head.flexible:
        return head._replace(body=_skip_tags(frame, pos))
    return head


class Fetch(NamedTuple):
    max_wait_ms: int
    min_bytes: int
    #: Where the fetch reads each partition from.
    offsets: dict[Partition, int]

    @property
    def partitions(self) -> frozenset[Partition]:
        return frozenset(self.offsets)


def fetch(frame: bytes, head: Request) -> Fetch | None:
    """A fetch request's wait, minimum and partitions; ``None`` for a version
    this module does not read."""
    if head.version not in FETCH_VERSIONS:
        return None
    r = _Reader(frame, head.body, head.flexible)
    r.skip(4)  # replica_id
    max_wait = r.int32()
    min_bytes = r.int32()
    r.skip(4 + 1)  # max_bytes, isolation_level
    if head.version >= 7:
        r.skip(8)  # session_id, session_epoch
    offsets = {}
    for _ in range(r.count()):
        topic = r.string()
        for _ in range(r.count()):
            partition = r.int32()
            if head.version >= 9:
                r.skip(4)  # current_leader_epoch
            offsets[(topic, partition)] = r.int64()
            r.skip(
                (4 if head.version >= 12 else 0)  # last_fetched_epoch
                + (8 if head.version >= 5 else 0)  # log_start_offset
                + 4  # partition_max_bytes
            )
            r.tags()
        r.tags()
    return Fetch(max_wait, min_bytes, offsets)


def with_wait(frame: bytes, head: Request, max_wait_ms: int) -> bytes:
    """``frame`` asking the broker to wait ``max_wait_ms`` at most."""
    at = head.body + 4  # after replica_id
    return frame[:at] + _INT32.pack(max_wait_ms) + frame[at + 4 :]


class Produce(NamedTuple):
    acks: int
    #: ``None``: a version this module does not read (any partition).
    partitions: frozenset[Partition] | None


def produce(frame: bytes, head: Request) -> Produce:
    """A produce request's acks and the partitions it writes to."""
    if head.version not in PRODUCE_VERSIONS:
        return Produce(-1, None)
    r = _Reader(frame, head.body, head.flexible)
    r.string()  # transactional_id
    (acks,) = _INT16.unpack_from(frame, r.pos)
    r.skip(2 + 4)  # acks, timeout_ms
    partitions = set()
    for _ in range(r.count()):
        topic = r.string()
        for _ in range(r.count()):
            partitions.add((topic, r.int32()))
            r.bytes_()  # records
            r.tags()
        r.tags()
    return Produce(acks, frozenset(partitions))


class Fetched(NamedTuple):
    """What a fetch response says, as far as the relay needs it."""

    #: Records or an error in it: either is answered at once.
    anything: bool
    #: Each partition's high watermark.
    ends: dict[Partition, int]

    def behind(self, asked: Fetch) -> bool:
        """Whether a partition has records past where ``asked`` reads it,
        though none came: the broker ran out of time for it."""
        return any(
            self.ends.get(partition, -1) > offset
            for partition, offset in asked.offsets.items()
        )


def fetched(frame: bytes, version: int) -> Fetched:
    """Read a fetch response (size prefix included). An unknown layout counts
    as an answer."""
    ends: dict[Partition, int] = {}
    if version not in FETCH_VERSIONS:
        return Fetched(True, ends)
    flexible = version >= _FLEXIBLE[FETCH]
    pos = 8  # size, correlation_id
    if flexible:
        pos = _skip_tags(frame, pos)
    r = _Reader(frame, pos, flexible)
    r.skip(4)  # throttle_time_ms
    anything = False
    if version >= 7:
        anything = r.int16() != 0
        r.skip(4)  # session_id
    for _ in range(r.count()):
        topic = r.string()
        for _ in range(r.count()):
            partition = r.int32()
            anything |= r.int16() != 0
            ends[(topic, partition)] = r.int64()
            r.skip(8 + (8 if version >= 5 else 0))  # last stable, log start
            for _ in range(r.count()):  # aborted transactions; null reads as 0
                r.skip(16)
                r.tags()
            if version >= 11:
                r.skip(4)  # preferred_read_replica
            anything |= r.bytes_() > 0
            r.tags()
        r.tags()
    return Fetched(anything, ends)


class _Reader:
    """A cursor over one message: flexible versions use compact (varint)
    lengths and tagged fields, older ones fixed-width lengths."""

    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: bytes, pos: int, flexible: bool) -> None:
        self.buf = buf
        self.pos = pos
        self.flexible = flexible

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.buf):
            raise FrameError("the message ends early")

    def int16(self) -> int:
        (value,) = _INT16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        (value,) = _INT32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def int64(self) -> int:
        (value,) = _INT64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def count(self) -> int:
        """An array's length; a null array counts as empty."""
        if self.flexible:
            value, self.pos = _uvarint(self.buf, self.pos)
            return max(value - 1, 0)
        return max(self.int32(), 0)

    def _length(self, fixed: Callable[[], int]) -> int:
        """A string's or bytes' length: a varint plus one when flexible, else
        ``fixed`` (an INT16 or INT32); -1 is null."""
        if self.flexible:
            value, self.pos = _uvarint(self.buf, self.pos)
            return value - 1
        return fixed()

    def string(self) -> str:
        length = self._length(self.int16)
        if length <= 0:
            return ""
        start = self.pos
        self.skip(length)
        return self.buf[start : self.pos].decode()

    def bytes_(self) -> int:
        """Skips a nullable byte string; returns its length (0 when null)."""
        length = self._length(self.int32)
        if length > 0:
            self.skip(length)
        return max(length, 0)

    def tags(self) -> None:
        if self.flexible:
            self.pos = _skip_tags(self.buf, self.pos)


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise FrameError("the message ends inside a varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise FrameError("a varint longer than 64 bits")


def _skip_tags(buf: bytes, pos: int) -> int:
    count, pos = _uvarint(buf, pos)
    for _ in range(count):
        _, pos = _uvarint(buf, pos)  # tag
        size, pos = _uvarint(buf, pos)
        pos += size
    if pos > len(buf):
        raise FrameError("the message ends inside its tagged fields")
    return pos
