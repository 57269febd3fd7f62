"""A broker whose retention deleted the head of a partition, played by a relay.

The embedded broker keeps every record (no retention, no DeleteRecords), so it
cannot show a log whose start moved up. This relay stands in front of it (the
broker advertises the relay's port, so every client goes through it) and,
for each partition told :meth:`Retention.delete_before`, answers as Kafka does
once retention deleted the records below an offset: ListOffsets gives that
offset as the earliest, every fetch reports it as the log start, and a fetch
below it is refused with OFFSET_OUT_OF_RANGE and no records. Everything else
is relayed as bytes; the answers rewritten are decoded and encoded again with
kafka-python's own protocol classes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse

from events.transport.broker import EmbeddedBroker

_FETCH, _LIST_OFFSETS = 1, 2
#: The requests this relay answers for, and the classes of their messages.
_APIS: dict[int, tuple[Any, Any]] = {
    _FETCH: (FetchRequest, FetchResponse),
    _LIST_OFFSETS: (ListOffsetsRequest, ListOffsetsResponse),
}
_OFFSET_OUT_OF_RANGE = 1
_EARLIEST = -2
#: A week: Kafka's default retention.ms.
WEEK_MS = 7 * 24 * 3600 * 1000
_TOPIC_NAMES_UNTIL = 12  # Fetch names topics by id from version 13
_SIZE = struct.Struct(">i")
_CORRELATION = struct.Struct(">i")  # a response header's first field
_REQUEST_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id


def create_bounded(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with Kafka's default retention of a week, as a cluster
    whose topics were made by hand might have it (the embedded broker reports
    a topic's configs as it was created with them)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        new = NewTopic(
            topic, partitions, 1, topic_configs={"retention.ms": str(WEEK_MS)}
        )
        admin.create_topics([new])
    finally:
        admin.close()


class Retention:
    """The relay, and the broker behind it (:attr:`bootstrap` is the relay's).

    It reads topics by name, as Fetch does up to version 12 (kafka-python's
    newest), and knows no fetch sessions (the embedded broker opens none):
    anything else it cannot answer for is an error, raised when it closes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server = socket.create_server((host, 0))
        self._port = int(self._server.getsockname()[1])
        self.broker = EmbeddedBroker(host, advertised_port=self._port)
        self._starts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        #: Fetches refused as below a log start: proof the fault met a reader.
        self.refused: list[tuple[str, int, int]] = []
        self._open: list[socket.socket] = []
        self._errors: list[BaseException] = []

    @property
    def bootstrap(self) -> str:
        return f"{self._host}:{self._port}"

    def delete_before(self, topic: str, partition: int, offset: int) -> None:
        """From now on, the partition's log starts at ``offset``."""
        with self._lock:
            self._starts[(topic, partition)] = offset

    def _start_of(self, topic: str, partition: int) -> int | None:
        with self._lock:
            return self._starts.get((topic, partition))

    def __enter__(self) -> Retention:
        self.broker.start()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        # A shutdown wakes the threads blocked on these sockets; a close alone
        # does not.
        for sock in [self._server, *self._open]:
            _hang_up(sock)
        self.broker.stop()
        if self._errors:
            raise AssertionError(f"the relay could not answer: {self._errors[0]!r}")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection((self._host, self.broker.port))
            except OSError:
                return  # closed
            self._open += [client, upstream]
            asked: dict[int, tuple[int, int, Any]] = {}
            for pump in (self._requests, self._responses):
                threading.Thread(
                    target=self._guarded,
                    args=(pump, client, upstream, asked),
                    daemon=True,
                ).start()

    def _guarded(
        self,
        pump: Any,
        client: socket.socket,
        upstream: socket.socket,
        asked: dict[int, Any],
    ) -> None:
        """Run a pump; once it ends (either side hung up, or it failed), hang
        up both sides, so the client sees the relay go rather than wait."""
        try:
            pump(client, upstream, asked)
        except OSError:
            pass  # the other side hung up mid-send
        except Exception as exc:  # kept, and raised when the relay closes
            self._errors.append(exc)
        finally:
            _hang_up(client)
            _hang_up(upstream)

    def _requests(
        self, client: socket.socket, upstream: socket.socket, asked: dict[int, Any]
    ) -> None:
        """Relay the client's requests, keeping those this relay answers for
        (decoded) by correlation id, for their responses."""
        for frame in _frames(client):
            key, version, correlation = _REQUEST_HEADER.unpack_from(frame)
            if key in _APIS:
                if key == _FETCH and version > _TOPIC_NAMES_UNTIL:
                    raise ValueError(f"Fetch v{version} names topics by id")
                request = _APIS[key][0].decode(frame, version=version, header=True)
                asked[correlation] = (key, version, request)
            upstream.sendall(_SIZE.pack(len(frame)) + frame)

    def _responses(
        self, client: socket.socket, upstream: socket.socket, asked: dict[int, Any]
    ) -> None:
        for frame in _frames(upstream):
            (correlation,) = _CORRELATION.unpack_from(frame)
            if (request := asked.pop(correlation, None)) is not None:
                frame = self._rewritten(frame, *request)
            client.sendall(_SIZE.pack(len(frame)) + frame)

    def _rewritten(self, frame: bytes, key: int, version: int, request: Any) -> bytes:
        kind = _APIS[key][1]
        # The response header is the correlation id, then (flexible versions)
        # its tagged fields: none, one byte saying so. Kept as it came.
        header = frame[: 5 if kind.flexible_version_q(version) else 4]
        response = kind[version].decode(frame[len(header) :])
        if key == _FETCH:
            self._fetched(request, response)
        else:
            self._listed(request, response)
        return header + bytes(response.encode())

    def _fetched(self, request: Any, response: Any) -> None:
        if getattr(response, "session_id", 0):
            # In a session, a partition whose offset did not change is left
            # out of the request: its fetch offset would be unknown here.
            raise ValueError(f"a fetch session ({response.session_id}) opened")
        asked = {
            (t.topic, p.partition): p.fetch_offset
            for t in request.topics
            for p in t.partitions
        }
        for topic in response.responses:
            for part in topic.partitions:
                tp = (topic.topic, part.partition_index)
                start = self._start_of(*tp)
                if start is None:
                    continue
                part.log_start_offset = start
                offset = asked.get(tp)
                if offset is not None and offset < start:
                    part.error_code = _OFFSET_OUT_OF_RANGE
                    part.records = None
                    self.refused.append((*tp, offset))

    def _listed(self, request: Any, response: Any) -> None:
        earliest = {
            (t.name, p.partition_index)
            for t in request.topics
            for p in t.partitions
            if p.timestamp == _EARLIEST
        }
        for topic in response.topics:
            for part in topic.partitions:
                tp = (topic.name, part.partition_index)
                start = self._start_of(*tp)
                if start is not None and tp in earliest:
                    part.offset = start


def _frames(sock: socket.socket) -> Iterator[bytes]:
    """Each size-prefixed message read from ``sock``, without its size, until
    it hangs up."""
    with sock.makefile("rb") as reader:
        try:
            while len(size := reader.read(_SIZE.size)) == _SIZE.size:
                (length,) = _SIZE.unpack(size)
                frame = reader.read(length)
                if len(frame) < length:
                    return
                yield frame
        except OSError:
            return  # hung up


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
