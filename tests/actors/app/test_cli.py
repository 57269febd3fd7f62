"""The ``saga`` command line, against the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.app.cli import build_parser, main
from events.transport.broker import EmbeddedBroker
from events.transport.publisher import KafkaMessagePublisher
from events.transport.settings import KafkaSettings
from events.wire.topics import ALL_TOPICS
from tests.events.transport.retention import WEEK_MS, create_bounded
from tests.events.transport.test_broker import wait_dead
from tests.events.transport.test_publisher import command

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]


def test_help_explains_every_command() -> None:
    out = subprocess.run(
        [*SAGA, "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for command_name in ("broker", "topics", "config", "SAGA_", "--config"):
        assert command_name in out
    for sub in (
        ["broker"],
        ["topics", "create"],
        ["topics", "list"],
        ["config", "show"],
        ["serve"],
        ["start"],
        ["show"],
    ):
        text = subprocess.run(
            [*SAGA, *sub, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
        assert "--bootstrap-servers" in text


def test_topics_create_then_list_with_partitions_and_end_offsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A broker of its own: the catalog's topic names are global.
    with EmbeddedBroker() as broker:
        flags = ["--bootstrap-servers", broker.bootstrap, "--partitions", "3"]
        assert main(["topics", "create", *flags]) == 0
        created = capsys.readouterr().out
        assert created.count("created") == len(ALL_TOPICS)
        assert main(["topics", "create", *flags]) == 0
        assert capsys.readouterr().out.count("exists") == len(ALL_TOPICS)

        settings = KafkaSettings(bootstrap_servers=(broker.bootstrap,))
        with KafkaMessagePublisher(settings) as publisher:
            publisher.publish_batch(
                ("user.commands.verify", command(f"saga-{i}", i)) for i in range(40)
            )
        assert main(["topics", "list", "--json", *flags]) == 0
        rows = {row["topic"]: row for row in json.loads(capsys.readouterr().out)}
        assert set(rows) == set(ALL_TOPICS)
        verify = rows["user.commands.verify"]
        assert verify["partitions"] == 3
        assert verify["messages"] == 40 == sum(verify["end_offsets"])
        assert rows["saga.dlq"]["end_offsets"] == [0, 0, 0]

        assert main(["topics", "list", *flags]) == 0
        table = capsys.readouterr().out
        assert "user.commands.verify" in table and "PARTITIONS" in table

        # The same topics with another partition count: refused, exit 1.
        assert main(["topics", "create", "--bootstrap-servers", broker.bootstrap]) == 1
        error = capsys.readouterr().err
        assert "partition count mismatch" in error and "has 3 partitions" in error


def test_topics_create_refuses_a_record_topic_configured_to_delete_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with EmbeddedBroker() as broker:
        create_bounded(broker.bootstrap, "saga.events", 3)
        flags = ["--bootstrap-servers", broker.bootstrap, "--partitions", "3"]
        assert main(["topics", "create", *flags]) == 1
        error = capsys.readouterr().err
        assert f"saga.events has retention.ms={WEEK_MS} (must be -1)" in error
        assert "kafka-configs.sh --alter" in error  # and how to mend it


def test_without_kafka_configured_topics_say_how_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAGA_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("SAGA_CONFIG", raising=False)
    assert main(["topics", "list"]) == 2
    assert "saga broker" in capsys.readouterr().err


def test_bad_configuration_exits_2_naming_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "show", "--set", "kafka.topics.partitions=many"]) == 2
    assert "kafka.topics.partitions" in capsys.readouterr().err
    assert main(["config", "show", "--set", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_usage_errors_exit_2_saying_what_to_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--sagas", "0"]) == 2
    assert capsys.readouterr().err == "error: --sagas must be at least 1, got 0\n"
    assert main(["config", "show", "--set", "=1"]) == 2
    assert capsys.readouterr().err == "error: --set '=1': expected KEY=VALUE\n"


@pytest.mark.parametrize("key", ["sasl_password", "ssl_password"])
def test_a_password_on_the_command_line_is_refused_unechoed(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "hunter2-secret"
    assert main(["config", "show", "--set", f"kafka.security.{key}={secret}"]) == 2
    out, err = capsys.readouterr()
    assert "never taken from the command line" in err
    assert f"SAGA_KAFKA_SECURITY_{key.upper()}" in err
    assert secret not in out + err


def test_the_metrics_endpoint_binds_loopback_unless_told() -> None:
    for name in ("serve", "run"):
        assert build_parser().parse_args([name]).metrics_addr == "127.0.0.1"
        told = build_parser().parse_args([name, "--metrics-addr", "0.0.0.0"])
        assert told.metrics_addr == "0.0.0.0"


def test_commands_other_than_serve_and_run_leave_ray_and_the_platform_unimported() -> (
    None
):
    """Ray, the platform and `saga run` are imported by their commands, when run:
    the other commands start in a fraction of the time."""
    code = (
        "import sys; from actors.app.cli import build_parser, config_from_args; "
        "config_from_args(build_parser().parse_args(['config', 'show'])); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray' or "
        "m.startswith(('actors.app.platform', 'actors.app.run', "
        "'actors.app.metrics', 'actors.runtime.ray'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_config_show_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGA_KAFKA_SECURITY_SASL_PASSWORD", "hunter2-secret")
    flags = ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN",
             "--sasl-username", "svc"]  # fmt: skip
    assert main(["config", "show", *flags]) == 0
    text = capsys.readouterr().out
    assert "hunter2-secret" not in text
    assert 'kafka.security.sasl_password = "***"' in text
    assert main(["config", "show", "--json", *flags]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kafka"]["security"]["sasl_password"] == "***"


def broker_children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(p) for p in children.read().split()]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_saga_broker_prints_bootstrap_serves_topics_and_stops_with_its_owner(
    stop: signal.Signals,
) -> None:
    process = subprocess.Popen(
        [*SAGA, "broker", "--partitions", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("bootstrap: 127.0.0.1:")
        assert "13 created" in process.stdout.readline()
        bootstrap = first.removeprefix("bootstrap: ")
        # The broker, and the long-poll relay in front of it.
        children = broker_children(process.pid)
        assert len(children) == 2
        listed = subprocess.run(
            [*SAGA, "topics", "list", "--json", "--bootstrap-servers", bootstrap],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        rows = json.loads(listed.stdout)
        assert {row["topic"] for row in rows} == set(ALL_TOPICS)
        assert {row["partitions"] for row in rows} == {2}
        process.send_signal(stop)
        started = time.monotonic()
        assert process.wait(timeout=15) in (0, 128 + stop)
        assert time.monotonic() - started < 10
        assert all(wait_dead(pid) for pid in children)
    finally:
        process.kill()
        process.wait()


@pytest.mark.broker
def test_serve_runs_sagas_started_from_the_command_line_to_their_end(
    tmp_path: Path,
) -> None:
    """The user's path, with nothing configured: `saga serve` (its embedded
    broker and the demo services), then `saga start --wait`, which follows the
    saga to its end and exits with its outcome; `saga show --follow` of a
    saga that ended prints it whole and exits the same way."""
    serve = subprocess.Popen(
        [*SAGA, "serve", "--every", "60", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        assert serve.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("engine running"):
            line = serve.stdout.readline()
            assert line, f"saga serve ended early: {lines}"
            lines.append(line)
        [bootstrap] = [x.split()[1] for x in lines if x.startswith("bootstrap:")]
        assert any(x.startswith("participants: account, payment, user") for x in lines)
        flags = ["--bootstrap-servers", bootstrap]

        def start(user: str) -> subprocess.CompletedProcess[str]:
            saga_input = {
                "userId": user,
                "accountId": "a-1",
                "amount": 250,
                "currency": "USD",
            }
            return subprocess.run(
                [*SAGA, "start", "deposit", "--input", json.dumps(saga_input),
                 "--wait", "--timeout", "90", *flags],
                capture_output=True, text=True, cwd=ROOT, timeout=120,
            )  # fmt: skip

        done = start("u-1")
        assert done.returncode == 0, done.stderr
        saga_id = done.stdout.splitlines()[0]
        assert "saga_completed" in done.stdout
        assert f"saga {saga_id} (deposit): completed" in done.stderr
        refused = start("blocked-1")
        assert refused.returncode == 4, refused.stderr  # rejected
        assert "user is blocked: blocked-1" in refused.stderr
        followed = subprocess.run(
            [*SAGA, "show", saga_id, "--follow", *flags],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert followed.returncode == 0, followed.stderr
        assert followed.stdout.splitlines()[0].split()[4] == "saga_started"
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
        serve.stdout.close()


def test_start_refuses_bad_input_with_a_clear_error(broker: EmbeddedBroker) -> None:
    flags = ["--bootstrap-servers", broker.bootstrap]
    missing = subprocess.run(
        [*SAGA, "start", "deposit", "--input", '{"userId": "u"}', *flags],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "needs input field(s) accountId, amount, currency" in missing.stderr
    unknown = subprocess.run(
        [*SAGA, "start", "withdraw", "--input", "{}", *flags],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert "unknown saga type 'withdraw'" in unknown.stderr
    not_json = subprocess.run(
        [*SAGA, "start", "deposit", "--input", "{", *flags],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert not_json.returncode == 2 and "--input is not JSON" in not_json.stderr
