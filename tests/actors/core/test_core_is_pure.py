"""The saga core and the wire run without Ray, kafka-python, DuckDB or transport."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A fresh interpreter in which importing ray, kafka or duckdb fails as if they
# were not installed; it then decides a whole saga with the core alone.
PROGRAM = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "kafka", "duckdb"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for blocked in ("ray", "kafka", "duckdb"):
    try:
        __import__(blocked)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{blocked} was not blocked")

from actors.core import DEPOSIT, Reply, Start, Status, decide
import events.wire.backoff, events.wire.dead_letters, events.wire.messages
import events.wire.nesting, events.wire.topics

input = {"userId": "u", "accountId": "a", "amount": 5, "currency": "USD"}
d = decide(DEPOSIT, None, Start(saga_id="s", saga_type="deposit", input=input, now=0))
for now, payload in ((1, {}), (2, {"paymentId": "p"}), (3, {})):
    send = d.commands[0]
    d = decide(DEPOSIT, d.state, Reply(
        saga_id="s", topic=send.message.metadata["replyTopic"],
        step_id=send.message.step_id, message_id=f"r{now}", success=True,
        payload=payload, error=None, now=now,
    ))
assert d.state.status is Status.COMPLETED, d.state
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"ray", "kafka", "duckdb"})
assert not loaded, loaded
impure = ("events.transport", "events.service")
transport = sorted(m for m in sys.modules if m.startswith(impure))
assert not transport, transport
print("ok")
"""


def test_the_core_and_wire_work_without_ray_kafka_duckdb_or_transport() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
