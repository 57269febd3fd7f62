"""An operator's cancel and retry through the whole engine: `saga cancel` and
`saga retry` on the command line, the request on saga.requests, the router,
the host, the core, and the participants' effects audited.

The responder stands in for the services: a ``hold-*`` user's payment is
never answered (the step stays in flight), a ``stubborn-*`` user's refund is
refused until the test relents.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.core import CANCEL_STEP, Status
from tests.actors.runtime.test_engine import PARTITIONS, running_platform, wait_terminal
from tests.reading import letters

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("ray_local")]

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]


def deposit(user: str, amount: int) -> dict[str, object]:
    return {"userId": user, "accountId": "a-1", "amount": amount, "currency": "USD"}


def test_cancel_and_retry_go_through_the_saga_and_its_log() -> None:
    with running_platform() as platform:
        flags = [
            "--bootstrap-servers",
            ",".join(platform.kafka.bootstrap_servers),
            "--partitions",
            str(PARTITIONS),
        ]

        def saga(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*SAGA, *args, *flags],
                capture_output=True, text=True, cwd=ROOT, timeout=120,
            )  # fmt: skip

        client, responder = platform.client, platform.responder
        engine = platform.engine()
        try:
            held, stubborn = client.start_many(
                [
                    ("deposit", deposit("hold-1", 100), "held"),
                    # Over the deposit's limit: refused, so its payment is
                    # refunded, and the refund is refused to the end.
                    ("deposit", deposit("stubborn-1", 5_000), "stubborn"),
                ]
            )
            failed = wait_terminal(client, [stubborn])[stubborn]
            assert failed.status is Status.FAILED, failed
            deadline = time.monotonic() + 60
            while (state := client.state(held)) is None or state.step != (
                "process_payment"
            ):
                assert time.monotonic() < deadline, state
                time.sleep(0.2)

            # Cancel, with the payment in flight: refunded now, never paid.
            cancelled = saga(
                "cancel", held, "--reason", "customer withdrew", "--operator",
                "ana@desk", "--wait",
            )  # fmt: skip
            assert cancelled.returncode == 3, cancelled.stderr  # compensated
            assert "cancel_requested" in cancelled.stdout
            assert '"customer withdrew"' in cancelled.stdout
            assert "saga held (deposit): compensated" in cancelled.stderr
            assert responder.effects[(held, "process_payment")] == 0
            assert responder.effects[(held, "process_payment.compensate")] == 1

            # The failed saga survives an engine restart, parked for a retry.
            engine.stop()
            engine = platform.engine()
            responder.stubborn = False
            retried = saga("retry", stubborn, "--reason", "refunds fixed", "--wait")
            assert retried.returncode == 3, retried.stderr
            assert "retry_requested" in retried.stdout
            assert responder.effects[(stubborn, "process_payment.compensate")] == 1

            # What cannot apply is refused at once, with the reason.
            again = saga("cancel", held, "--reason", "twice")
            assert again.returncode == 1
            assert "has ended (compensated): there is nothing to cancel" in (
                again.stderr
            )
            running = saga("retry", held, "--reason", "no")
            assert "only a failed saga can be retried" in running.stderr
            # One that gets past the check (sent straight to saga.requests)
            # is dead-lettered by the engine, with the reason.
            client.request(held, CANCEL_STEP, "late", "script@ci")
            deadline = time.monotonic() + 60
            while not (
                found := [
                    x for x in letters(platform.kafka, PARTITIONS) if x.saga_id == held
                ]
            ):
                assert time.monotonic() < deadline, "the late cancel was not refused"
                time.sleep(0.5)
            assert "only a failed saga can be acted on" in found[0].error
            # The log holds each request, who asked and why.
            events = [e for r in client.history(held) for e in r.events]
            [request] = [e for e in events if type(e).__name__ == "CancelRequested"]
            assert (request.operator, request.reason) == (  # type: ignore[union-attr]
                "ana@desk",
                "customer withdrew",
            )
        finally:
            engine.stop()
