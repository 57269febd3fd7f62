"""A long-poll relay in front of the embedded broker: a waiting fetch is
answered when records arrive, as Kafka answers it.

Kafka holds a fetch that found no records for up to its ``max_wait_ms`` and
answers it as soon as records arrive. The embedded broker (Tansu 0.6) holds it
too, but looks again only at half the wait, then three quarters, and so on:
a record produced just after a consumer's fetch reached it waits about half
``fetch_max_wait_ms`` (measured: 50 ms at 100, 150 ms at 300). Every hop of a
saga pays it.

This relay sits between the clients and the broker and passes every request
and response through byte for byte, with one exception: a fetch that may wait
is asked of the broker with a 1 ms wait; when that finds nothing, the relay
holds the fetch itself until a produce to one of its partitions is
acknowledged (then it asks again) or the client's own wait is over (then it
answers with the empty response it has). Responses go back in the order the
requests came, as the protocol wants. A version of a request it cannot read is
relayed untouched.

It runs as its own process (``python -m events.transport.longpoll``), started
by :class:`~events.transport.broker.EmbeddedBroker`; against a real Kafka
cluster there is nothing to relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import struct
from collections import deque
from collections.abc import Iterable

from events.transport.frames import (
    FETCH,
    PRODUCE,
    Fetch,
    FrameError,
    Partition,
    Request,
    fetch,
    fetched,
    produce,
    request,
    with_wait,
)

log = logging.getLogger(__name__)

#: What the relay asks the broker to wait: its shortest that looks at all
#: (at 0 it answers without looking).
_BROKER_WAIT_MS = 1

#: A client's wait this short is relayed as it is: nothing to gain.
_SHORT_WAIT_MS = 5

#: What a request the relay cannot read raises.
_UNREADABLE = (FrameError, struct.error, UnicodeDecodeError)


class Arrivals:
    """Which partitions had records acknowledged, and which fetches wait on
    them; one for the whole relay."""

    def __init__(self) -> None:
        #: Per partition, how many produces to it were acknowledged.
        self._versions: dict[Partition, int] = {}
        #: Produces to partitions not read (a version not known): anywhere.
        self._anywhere = 0
        self._waiting: dict[Partition, set[_Poll]] = {}

    def versions(self, partitions: Iterable[Partition]) -> tuple[int, ...]:
        return (self._anywhere, *(self._versions.get(p, 0) for p in partitions))

    def arrived(self, partitions: Iterable[Partition] | None) -> None:
        """Records landed on ``partitions`` (``None``: on any)."""
        woken: set[_Poll] = set()
        if partitions is None:
            self._anywhere += 1
            for polls in self._waiting.values():
                woken.update(polls)
        else:
            for partition in partitions:
                self._versions[partition] = self._versions.get(partition, 0) + 1
                woken.update(self._waiting.get(partition, ()))
        for poll in woken:
            poll.wake()

    def watch(self, poll: _Poll) -> None:
        for partition in poll.partitions:
            self._waiting.setdefault(partition, set()).add(poll)

    def forget(self, poll: _Poll) -> None:
        for partition in poll.partitions:
            waiting = self._waiting.get(partition)
            if waiting is not None:
                waiting.discard(poll)
                if not waiting:
                    del self._waiting[partition]


class _Answer:
    """A response the client is owed; answers go back in the order asked."""

    __slots__ = ("frame",)

    def __init__(self) -> None:
        self.frame: bytes | None = None

    def answered(self, frame: bytes) -> None:
        """The broker's response to what this answer asked of it."""
        self.frame = frame

    def cancel(self) -> None:
        pass


class _Produce(_Answer):
    __slots__ = ("partitions",)

    def __init__(self, partitions: frozenset[Partition] | None) -> None:
        super().__init__()
        self.partitions = partitions


class _Poll(_Answer):
    """A fetch the relay holds: asked of the broker with a short wait, again
    whenever records land on its partitions, answered once the broker's
    response has records (or an error) or the client's own wait is over."""

    __slots__ = (
        "_deadline",
        "_empty",
        "_frame",
        "_link",
        "_quick",
        "_seen",
        "_timer",
        "_wanted",
        "partitions",
        "version",
    )

    def __init__(self, link: _Link, frame: bytes, head: Request, wanted: Fetch):
        super().__init__()
        self._link = link
        self.version = head.version
        self.partitions = wanted.partitions
        self._wanted = wanted
        self._frame = frame
        self._quick = with_wait(frame, head, _BROKER_WAIT_MS)
        self._deadline = link.loop.time() + wanted.max_wait_ms / 1000
        self._seen: tuple[int, ...] = ()
        self._empty = b""
        self._timer: asyncio.TimerHandle | None = None

    def ask(self) -> None:
        self._seen = self._link.arrivals.versions(self.partitions)
        self._link.ask(self._quick, self)

    def answered(self, frame: bytes) -> None:
        link = self._link
        left = self._deadline - link.loop.time()
        answer = fetched(frame, self.version)
        if left <= 0 or answer.anything:
            self.frame = frame
            return
        if answer.behind(self._wanted):
            # Records are there, but the broker spends a fetch's wait reading
            # partitions in turn and ran out of 1 ms before reaching them:
            # with the client's own wait it reads them, and answers at once.
            link.ask(self._frame, self)
            return
        if link.arrivals.versions(self.partitions) != self._seen:
            self.ask()  # records landed while the broker looked: look again
            return
        self._empty = frame
        link.arrivals.watch(self)
        self._timer = link.loop.call_later(left, self._expire)

    def wake(self) -> None:
        self.cancel()
        self.ask()

    def _expire(self) -> None:
        self._timer = None
        self.cancel()
        self.frame = self._empty
        self._link.flush()

    def cancel(self) -> None:
        self._link.arrivals.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Frames:
    """Cuts a byte stream into Kafka frames (a 4-byte size, then the size)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        while len(buffer) - start >= 4:
            size = int.from_bytes(buffer[start : start + 4], "big", signed=True)
            if size < 0:
                raise ConnectionError(f"a frame of negative size {size}")
            end = start + 4 + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[start:end]))
            start = end
        if start:
            del buffer[:start]
        return frames


class _Link(asyncio.Protocol):
    """One client connection, and the broker connection that serves it."""

    def __init__(self, arrivals: Arrivals, broker: tuple[str, int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.arrivals = arrivals
        self._broker_address = broker
        self._client: asyncio.Transport | None = None
        self._upstream: _Upstream | None = None
        self._requests = _Frames()
        #: Requests that came before the broker connection was up.
        self._early: list[bytes] = []
        #: What the broker owes, in the order it was asked.
        self._owed: deque[_Answer] = deque()
        #: What the client is owed, in the order it asked.
        self._answers: deque[_Answer] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client = transport
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await self.loop.create_connection(
                lambda: _Upstream(self), *self._broker_address
            )
        except OSError as exc:
            log.warning("the broker at %s:%d refused: %s", *self._broker_address, exc)
            self.close()
            return
        self._upstream = upstream
        early, self._early = self._early, []
        for frame in early:
            self._request(frame)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._requests.feed(data)
        except ConnectionError as exc:
            log.warning("closing a client connection: %s", exc)
            self.close()
            return
        for frame in frames:
            if self._upstream is None:
                self._early.append(frame)
            else:
                self._request(frame)

    def _request(self, frame: bytes) -> None:
        answer: _Answer
        try:
            head = request(frame)
            answer = self._relay(frame, head)
        except _UNREADABLE as exc:
            log.warning("relaying a request it cannot read as it is: %s", exc)
            answer = _Answer()
            self.ask(frame, answer)
        self._answers.append(answer)

    def _relay(self, frame: bytes, head: Request) -> _Answer:
        if head.api_key == FETCH:
            wanted = fetch(frame, head)
            # min_bytes 0 asks not to wait at all: relayed as it is.
            if (
                wanted is not None
                and wanted.min_bytes > 0
                and wanted.max_wait_ms > _SHORT_WAIT_MS
            ):
                poll = _Poll(self, frame, head, wanted)
                poll.ask()
                return poll
        elif head.api_key == PRODUCE:
            written = produce(frame, head)
            if written.acks == 0:
                # No response comes: the records count as landed once sent.
                self._send(frame)
                self.arrivals.arrived(written.partitions)
                done = _Answer()
                done.frame = b""
                return done
            produced = _Produce(written.partitions)
            self.ask(frame, produced)
            return produced
        answer = _Answer()
        self.ask(frame, answer)
        return answer

    def ask(self, frame: bytes, answer: _Answer) -> None:
        """Send ``frame`` to the broker; its response goes to ``answer``."""
        self._owed.append(answer)
        self._send(frame)

    def _send(self, frame: bytes) -> None:
        assert self._upstream is not None
        self._upstream.send(frame)

    def responded(self, frame: bytes) -> None:
        """The broker's next response."""
        answer = self._owed.popleft()
        answer.answered(frame)
        if isinstance(answer, _Produce):
            self.arrivals.arrived(answer.partitions)
        self.flush()

    def flush(self) -> None:
        """Write what the client is owed, in order, as far as it is ready."""
        answers = self._answers
        client = self._client
        while answers and answers[0].frame is not None:
            frame = answers.popleft().frame
            if frame and client is not None:
                client.write(frame)

    def close(self) -> None:
        for answer in self._answers:
            answer.cancel()
        self._answers.clear()
        if self._client is not None:
            self._client.close()
        if self._upstream is not None:
            self._upstream.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client = None
        self.close()


class _Upstream(asyncio.Protocol):
    """The broker's side of a link."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self._responses = _Frames()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self, frame: bytes) -> None:
        if self._transport is not None:
            self._transport.write(frame)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._responses.feed(data)
        except ConnectionError as exc:
            log.warning("closing a broker connection: %s", exc)
            self._link.close()
            return
        for frame in frames:
            self._link.responded(frame)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._link.close()


async def serve(listen: tuple[str, int], broker: tuple[str, int]) -> None:
    """Relay connections on ``listen`` to ``broker`` until cancelled."""
    arrivals = Arrivals()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Link(arrivals, broker), *listen)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m events.transport.longpoll",
        description="Relay Kafka clients to the embedded broker, answering a "
        "waiting fetch as soon as records arrive.",
    )
    parser.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--broker", type=_address, required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    # SIGTERM ends the relay as Ctrl-C would: quietly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.broker))


if __name__ == "__main__":
    main()
