"""Helpers for driving the pure saga core in tests: inputs built from commands."""

from __future__ import annotations

from typing import Any

from actors.core import (
    DEFINITIONS,
    Decision,
    HistoryCodec,
    LogRecord,
    Reply,
    SagaDefinition,
    SagaState,
    Send,
    Start,
    Tick,
    Verdict,
    decide,
)

INPUT = {"userId": "u-1", "accountId": "a-1", "amount": 250, "currency": "USD"}
CODEC = HistoryCodec()


def reply_to(
    send: Send, now: int, *, success: bool = True, jitter: float = 0.0, **payload: Any
) -> Reply:
    """The participant's answer to ``send``, on the action's reply topic."""
    message = send.message
    return Reply(
        saga_id=message.saga_id,
        topic=message.metadata["replyTopic"],
        step_id=message.step_id,
        message_id=f"reply:{message.message_id}",
        success=success,
        payload=payload,
        error=None if success else "refused",
        now=now,
        jitter=jitter,
    )


class Run:
    """One saga driven input by input, keeping the encoded log like a host does."""

    def __init__(self, saga_id: str = "s-1", definition: SagaDefinition | None = None):
        self.definition = definition or DEFINITIONS["deposit"]
        self.saga_id = saga_id
        self.state: SagaState | None = None
        self.log: list[bytes] = []
        self.states: list[SagaState] = []  # the live state after each record
        self.sent: list[Send] = []
        self.decisions: list[Decision] = []

    def feed(self, item: Start | Reply | Tick) -> Decision:
        decision = decide(self.definition, self.state, item)
        self.decisions.append(decision)
        if decision.verdict is Verdict.APPLIED and decision.events:
            seq = 1 if self.state is None else self.state.seq + 1
            record = LogRecord(
                saga_id=self.saga_id,
                saga_type=self.definition.name,
                seq=seq,
                at=item.now,
                events=decision.events,
            )
            self.log.append(CODEC.encode(record))
            assert decision.state is not None
            self.state = decision.state
            self.states.append(decision.state)
        self.sent.extend(decision.commands)
        return decision

    def start(self, now: int = 1_000, **overrides: Any) -> Decision:
        return self.feed(
            Start(
                saga_id=self.saga_id,
                saga_type=self.definition.name,
                input={**INPUT, **overrides},
                now=now,
            )
        )

    def records(self) -> list[LogRecord]:
        return [CODEC.decode(raw) for raw in self.log]
