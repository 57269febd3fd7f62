"""The embedded broker starts, answers Kafka, and dies with its owner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.procstat import STATE, stat_fields
from events.transport.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[3]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return stat_fields(pid)[STATE] != "Z"  # a zombie is dead too


def wait_dead(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_starts_on_a_free_loopback_port_answers_and_stops() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    host, port = broker.bootstrap.split(":")
    assert host == "127.0.0.1"
    with TopicAdmin(KafkaSettings(bootstrap_servers=(broker.bootstrap,))) as admin:
        assert admin.partition_counts() == {}
    broker.stop()
    assert wait_dead(pid)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def test_two_brokers_run_side_by_side() -> None:
    with EmbeddedBroker() as one, EmbeddedBroker() as two:
        assert one.bootstrap != two.bootstrap
        for broker in (one, two):
            settings = KafkaSettings(bootstrap_servers=(broker.bootstrap,))
            with TopicAdmin(settings) as admin:
                admin.ensure_topics([f"b{broker.port}.events.x"], partitions=1)
                assert list(admin.partition_counts()) == [f"b{broker.port}.events.x"]


OWNER = """
import sys, time
from events.transport.broker import EmbeddedBroker
broker = EmbeddedBroker().start()
print(broker.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(
    ("fault", "exit_code"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, -signal.SIGINT),
     (signal.SIGTERM, -signal.SIGTERM)],
    ids=["owner-killed", "owner-interrupted", "owner-terminated"],
)  # fmt: skip
def test_broker_dies_with_its_owner(fault: signal.Signals, exit_code: int) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert owner.stdout is not None
        broker_pid = int(owner.stdout.readline())
        assert alive(broker_pid)
        owner.send_signal(fault)
        code = owner.wait(timeout=15)
        assert code == exit_code  # the fault really fired
        assert wait_dead(broker_pid), f"broker {broker_pid} outlived its owner"
    finally:
        owner.kill()
        owner.wait()


def thread_states(pid: int) -> list[str]:
    """The /proc state letter of each thread of ``pid`` (T: stopped)."""
    tasks = os.listdir(f"/proc/{pid}/task")
    return [stat_fields(pid, int(task))[STATE] for task in tasks]


def test_a_pause_returns_once_every_thread_of_the_broker_has_stopped() -> None:
    """SIGSTOP takes effect asynchronously: a send right after a pause that
    returned early was once acknowledged. Read at once, with no settling."""
    with EmbeddedBroker() as broker:
        for _ in range(20):
            broker.pause()
            states = thread_states(broker.pid)
            broker.resume()
            assert len(states) > 1 and set(states) <= {"T", "t"}, states


def test_a_paused_broker_still_stops() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    broker.pause()
    broker.stop()
    assert wait_dead(pid)
