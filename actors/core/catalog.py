"""The saga types this orchestrator runs: the deposit saga, and the catalog by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from actors.core.definitions import Action, InputType, SagaDefinition, Step

_TEXT = InputType("string")


def _deposit() -> SagaDefinition:
    return SagaDefinition(
        name="deposit",
        inputs=("userId", "accountId", "amount", "currency"),
        # What the payment and account services take: an amount is a whole
        # number above 0.
        input_types={
            "userId": _TEXT,
            "accountId": _TEXT,
            "amount": InputType("integer", minimum=1),
            "currency": _TEXT,
        },
        steps=(
            Step(
                name="verify_user",
                action=Action(
                    command_topic="user.commands.verify",
                    payload={"userId": "$input.userId"},
                ),
            ),
            Step(
                name="process_payment",
                action=Action(
                    command_topic="payment.commands.process",
                    payload={
                        "userId": "$input.userId",
                        "amount": "$input.amount",
                        "currency": "$input.currency",
                    },
                ),
                # By sagaId, not paymentId: a payment that timed out is refunded
                # too, and its reply (with the paymentId) never came.
                compensation=Action(
                    command_topic="payment.commands.refund",
                    payload={
                        "sagaId": "$saga.id",
                        "userId": "$input.userId",
                        "amount": "$input.amount",
                        "currency": "$input.currency",
                    },
                ),
            ),
            Step(
                name="deposit",
                action=Action(
                    command_topic="account.commands.deposit",
                    payload={
                        "accountId": "$input.accountId",
                        "amount": "$input.amount",
                        "currency": "$input.currency",
                        "paymentId": "$steps.process_payment.paymentId",
                    },
                ),
            ),
        ),
    )


#: The platform's deposit saga: verify the user, take the payment, credit the
#: account; a failed deposit refunds the payment; a failed verification rejects
#: the saga with nothing to undo.
DEPOSIT: Final = _deposit()

#: The saga types this orchestrator runs, by name.
DEFINITIONS: Final[Mapping[str, SagaDefinition]] = {DEPOSIT.name: DEPOSIT}
