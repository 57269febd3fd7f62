"""Consumer threads of the Ray actors: they retry the broker, and never die alone.

Ray restarts an actor whose process dies, not one whose thread did: a consumer
thread that died quietly would leave an actor that still answers ``stats()``
and consumes nothing, while everything waiting on it times out. So a worker
thread that fails takes its process with it, and Ray starts a fresh one that
rejoins the consumer group.

One error is the exception: a log that lost records (:class:`LogLostError`).
A new process would meet the same loss, or worse, not see it; so the thread
stops, the actor stays up, and its :class:`Fatal` says why until a person acts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, NoReturn, TypeVar

from events.errors import EventsError, LogLostError, MessageDecodeError

log = logging.getLogger(__name__)

#: The exit status of a process whose worker thread died (EX_SOFTWARE).
WORKER_DIED: Final = 70

T = TypeVar("T")


def connect_patiently(
    stopping: threading.Event,
    connect: Callable[[], T],
    what: str,
    fatal: tuple[type[EventsError], ...] = (),
) -> T | None:
    """``connect()`` once it succeeds, waiting out a broker that is down (0.5 s
    doubling to 10 s between tries); ``None`` if ``stopping`` is set first.
    The ``fatal`` errors, which waiting cannot fix, raise at once.

    Actors connect in their worker thread, not their constructor, and a host
    restores this way: Ray does not restart an actor whose constructor raised,
    so one that met the broker down would stay dead, and its partitions or
    commands with it.
    """
    delay = 0.5
    while not stopping.is_set():
        try:
            return connect()
        except LogLostError:
            raise
        except fatal:
            raise
        except EventsError as exc:
            log.warning(
                "%s: waiting for Kafka, retrying in %.1f s: %s", what, delay, exc
            )
            stopping.wait(delay)
            delay = min(delay * 2, 10.0)
    return None


class Fatal:
    """Why a component stopped for good: what the log lost ("" while it runs).
    The first loss is kept and logged once; later ones are the same news."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason = ""

    def record(self, what: str, exc: LogLostError) -> None:
        if not self.reason:
            self.reason = exc.what
            log.critical("%s stopped: %s", what, exc)


def start_vital(name: str, loop: Callable[[], None], fatal: Fatal) -> threading.Thread:
    """Run ``loop`` in a daemon thread; if it raises, log the error and end the
    process at once. ``loop`` returning is a stop, not a death; so is a lost
    log, recorded in ``fatal``."""

    def guarded() -> None:
        try:
            loop()
        except LogLostError as exc:
            fatal.record(name, exc)
        except BaseException:
            _die(name)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def die_now(mark: str, where: str) -> NoReturn:
    """Fault injection (the crash tests, ``saga run --chaos``): write to the
    file ``mark`` (if one is named) that this process dies ``where``, then end
    it with SIGKILL: no clean-up, as a crash would."""
    if mark:
        Path(mark).write_text(f"{os.getpid()} {where}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("SIGKILL returned")  # pragma: no cover


def _die(name: str) -> NoReturn:
    log.critical(
        "worker thread %r died; ending process %d so that it is restarted",
        name,
        os.getpid(),
        exc_info=True,
    )
    # Not sys.exit: from a thread it would end only the thread.
    os._exit(WORKER_DIED)


def poll_until(
    stopping: threading.Event,
    poll: Callable[[], object],
    transient: tuple[type[Exception], ...],
    what: str,
) -> None:
    """Call ``poll`` until ``stopping`` is set.

    An error in ``transient`` (the broker or the network) is logged and the
    poll tried again a second later: the listener rewound the batch, and a new
    process would meet the same cluster (and a Ray actor whose constructor
    cannot reach the broker is not restarted at all). Anything else raises: a
    retry would meet the same record or the same bug forever.
    """
    while not stopping.is_set():
        try:
            poll()
        except (MessageDecodeError, LogLostError):
            raise  # a record or a lost log, not the broker: never fixed by retries
        except transient:
            log.exception("%s failed; retrying", what)
            stopping.wait(1.0)
