"""``saga`` behaves as a Unix tool and service: a version, defaults in its help,
flag values checked before anything starts, a port in use refused at once, a
closed pipe ended quietly, and SIGTERM stopping ``saga serve`` cleanly."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from actors.app.cli import BROKEN_PIPE, DISTRIBUTION, build_parser, main, version_text
from events.transport.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]


def saga(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAGA, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def test_version_is_the_installed_distributions() -> None:
    result = saga("--version")
    assert result.returncode == 0
    assert result.stdout == f"saga {version(DISTRIBUTION)}\n"
    assert "not installed" in version_text("no-such-distribution-here")


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def test_every_help_shows_the_defaults_and_no_noise() -> None:
    helps = {p.prog: p.format_help() for p in parsers(build_parser())}
    assert len(helps) > 15  # every command, the nested ones too
    for prog, text in helps.items():
        for noise in ("(default: None)", "(default: False)", "(default: [])"):
            assert noise not in text, (prog, noise)
    assert "(default: 1000)" in helps["saga run"]  # --sagas
    assert "(default: 0.02)" in helps["saga run"]  # --faults
    assert "(default: 10.0)" in helps["saga serve"]  # --every
    assert "(default: 127.0.0.1)" in helps["saga broker"]  # --host
    # A default stated in words is not stated twice.
    assert "(default: a free one)" in helps["saga broker"]
    assert helps["saga broker"].count("(default") == 2


def test_every_option_with_a_default_states_it_in_every_help() -> None:
    """Also where a command lays its description out by hand (saga list,
    saga dlq, saga check, saga backtest): their help once dropped defaults."""
    unstated = []
    for parser in parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            help = action.help or ""
            if (
                not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)
                or action.default == []
                or help == argparse.SUPPRESS
                or "(default" in help
            ):
                continue
            if f"(default: {action.default})" not in text:
                unstated.append(f"{parser.prog} {action.option_strings[0]}")
    assert unstated == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--faults", "2"], "--faults is a share, from 0 up to but not"),
        (["run", "--faults", "-0.1"], "--faults is a share"),
        (["run", "--sagas", "0"], "--sagas must be at least 1, got 0"),
        (["run", "--sagas", "-5"], "--sagas must be at least 1, got -5"),
        (["run", "--max-in-flight", "0"], "--max-in-flight must be at least 1"),
        (["run", "--stall-timeout", "0"], "--stall-timeout must be more than 0"),
        (["run", "--metrics-port", "70000"], "--metrics-port must be a port from 1"),
        (["serve", "--every", "0"], "--every must be more than 0, got 0"),
        (["serve", "--every", "-1"], "--every must be more than 0, got -1"),
        (["serve", "--metrics-port", "0"], "--metrics-port must be a port from 1"),
        (["broker", "--port", "65536"], "--port must be a port from 1 to 65535"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("saga_input", "message"),
    [
        (
            {"userId": "u", "accountId": "a", "amount": "lots", "currency": 7},
            "input amount must be an integer of at least 1, got 'lots'; "
            "currency must be a string, got 7",
        ),
        (
            {"userId": "u", "accountId": "a", "amount": -5, "currency": "USD"},
            "input amount must be an integer of at least 1, got -5",
        ),
        (
            {"userId": "u", "accountId": "a", "amount": True, "currency": "USD"},
            "input amount must be an integer of at least 1, got True",
        ),
        ({"userId": "u"}, "needs input field(s) accountId, amount, currency"),
    ],
)
def test_start_refuses_bad_input_before_asking_kafka(
    saga_input: dict[str, object],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No Kafka configured: had the input been accepted, that would be the error.
    monkeypatch.delenv("SAGA_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("SAGA_CONFIG", raising=False)
    assert main(["start", "deposit", "--input", json.dumps(saga_input)]) == 2
    assert capsys.readouterr().err == (
        f"error: --input: saga type 'deposit': {message}\n"
        if "needs" not in message
        else f"error: --input: saga type 'deposit' {message}; got userId\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "--input is not JSON: Input data was truncated"),
        (
            '{"x": ' + "[" * 5_000 + "]" * 5_000 + "}",
            "--input: nesting depth 5001 exceeds the limit of 64 levels",
        ),
    ],
)
def test_start_refuses_input_that_is_no_json_or_nested_past_the_bound(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once, 5,000 levels of nesting ended in a RecursionError's traceback."""
    assert main(["start", "deposit", "--input", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "flag"),
    [("serve", "--metrics-port"), ("run", "--metrics-port"), ("broker", "--port")],
)
def test_a_port_in_use_is_one_line_before_anything_starts(
    held_port: int, command: str, flag: str
) -> None:
    began = time.monotonic()
    result = saga(command, flag, str(held_port))
    took = time.monotonic() - began
    assert result.returncode == 2
    assert result.stderr == (
        f"error: port {held_port} is in use on 127.0.0.1: stop what listens "
        f"there, or pass another {flag}\n"
    )
    assert result.stdout == ""  # no broker address, no Ray, nothing started
    # The interpreter and the CLI's imports: no broker, no Ray.
    assert took < 5, took


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    """`saga config show | head -1`: the reader gone before the output is
    written (deterministic, unlike racing head) gets exit 141 and no traceback."""
    assert_quiet_into_closed_pipe("config", "show")


def assert_quiet_into_closed_pipe(*args: str) -> None:
    """``saga ARGS`` with its reader gone before it writes: exit 141, and
    nothing on stderr (no traceback)."""
    process = subprocess.Popen(
        [*SAGA, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    assert process.wait(timeout=60) == BROKEN_PIPE
    assert process.stderr.read() == ""
    process.stderr.close()


@pytest.mark.broker
def test_topics_list_json_into_a_closed_pipe_ends_quietly(
    broker: EmbeddedBroker,
) -> None:
    assert_quiet_into_closed_pipe(
        "topics", "list", "--json", "--bootstrap-servers", broker.bootstrap
    )


def session_members(session: int) -> dict[int, str]:
    """Every live process of the session, by pid, with its name (/proc)."""
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        state, _ppid, _pgrp, sid = rest.split()[:4]
        if int(sid) == session and state != "Z":
            members[int(entry)] = name
    return members


@pytest.mark.broker
def test_sigterm_stops_serve_cleanly_and_leaves_no_process(tmp_path: Path) -> None:
    """What systemd, Kubernetes and supervisors send: exit 0 within 30 s, and
    nothing of its own left running (Ray's agents included)."""
    serve = subprocess.Popen(
        [*SAGA, "serve", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own session: all it starts is found by it
    )
    try:
        assert serve.stdout is not None and serve.stderr is not None
        for line in serve.stdout:
            if line.startswith("engine running"):
                break
        else:
            raise AssertionError(f"serve ended early: {serve.stderr.read()}")
        running = set(session_members(serve.pid).values())
        # The check below can see Ray's processes: they are in the session.
        assert {"raylet", "gcs_server"} <= running, running
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        err = serve.stderr.read()
        assert "stopping" in err and "Traceback" not in err
        # An orderly stop: every actor stopped, none killed under it.
        assert "did not stop cleanly" not in err and "did not close" not in err
        deadline = time.monotonic() + 10
        while session_members(serve.pid):
            assert time.monotonic() < deadline, session_members(serve.pid)
            time.sleep(0.2)
        # Ray's own output went to the data dir, not the console.
        assert (tmp_path / "ray.log").exists()
        assert f"Ray's own log: {tmp_path / 'ray.log'}" in err
        assert "WARNING" not in err
    finally:
        serve.kill()
        serve.wait()
        for pid in session_members(serve.pid):
            os.kill(pid, signal.SIGKILL)
        for stream in (serve.stdout, serve.stderr):
            if stream is not None:
                stream.close()
