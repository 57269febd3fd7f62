"""The participants' commands as the saga engine sends them, for the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.wire.messages import CommandMessage


def command(
    saga_id: str, step: str, service: str, attempt: int = 1, **payload: Any
) -> CommandMessage:
    return CommandMessage(
        message_id=f"{saga_id}:{step}:{attempt}",
        saga_id=saga_id,
        step_id=step,
        timestamp=datetime.now(UTC),
        target_service=service,
        payload=payload,
        metadata={"idempotencyKey": f"{saga_id}:{step}", "attempt": str(attempt)},
    )


def pay(
    saga_id: str, user: str = "u-1", amount: int = 100, attempt: int = 1
) -> CommandMessage:
    return command(
        saga_id,
        "process_payment",
        "payment",
        attempt,
        userId=user,
        amount=amount,
        currency="USD",
    )


def refund(saga_id: str, attempt: int) -> CommandMessage:
    return command(
        saga_id,
        "process_payment.compensate",
        "payment",
        attempt,
        paymentId=f"pay-{saga_id}",
    )
