"""Helpers for driving the pure saga core in tests: inputs built from commands."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from actors.core import (
    DEFINITIONS,
    Cancel,
    Claim,
    Decision,
    HistoryCodec,
    Hold,
    LogRecord,
    Release,
    Reply,
    Retry,
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

    def feed(self, item: Start | Reply | Tick | Cancel | Retry) -> Decision:
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

    def cancel(
        self, now: int, request_id: str = "op-1", reason: str = "why"
    ) -> Decision:
        return self.feed(
            Cancel(
                saga_id=self.saga_id,
                request_id=request_id,
                reason=reason,
                operator="ana@desk",
                now=now,
            )
        )

    def retry(
        self, now: int, request_id: str = "op-2", reason: str = "fixed"
    ) -> Decision:
        return self.feed(
            Retry(
                saga_id=self.saga_id,
                request_id=request_id,
                reason=reason,
                operator="ana@desk",
                now=now,
            )
        )

    def hold(self, now: int, origin: str = "user.events.verify/0/7") -> Decision:
        return self.feed(
            Hold(saga_id=self.saga_id, origin=origin, reason="poison", now=now)
        )

    def release(
        self,
        now: int,
        how: str = "resolved",
        reply: Reply | None = None,
        origin: str = "user.events.verify/0/7",
        request_id: str = "op-3",
    ) -> Decision:
        return self.feed(
            Release(
                saga_id=self.saga_id,
                request_id=request_id,
                reason="looked at it",
                operator="ana@desk",
                origin=origin,
                how=how,
                reply=reply,
                now=now,
            )
        )

    def records(self) -> list[LogRecord]:
        return [CODEC.decode(raw) for raw in self.log]


def claim(epoch: int, owner: str = "host-b", partition: int = 0) -> Claim:
    return Claim(partition=partition, epoch=epoch, owner=owner, engine="engine-1")


def at(record: LogRecord, epoch: int) -> LogRecord:
    """``record`` as written by an owner at ``epoch``."""
    return msgspec.structs.replace(record, epoch=epoch)


class Handover:
    """A partition changing hands under a saga, with the old owner not knowing.

    Owner A (host-a, epoch 1) starts a saga; B (host-b) claims the partition
    (epoch 2); A, not knowing, appends the verification's success as the
    saga's second record; B, restored up to its claim, appends the
    verification's timeout as its second record. ``entries`` is that log;
    ``owner`` and ``zombie`` are the sagas as B and A have them."""

    def __init__(self, partition: int = 0, saga_id: str = "s-1") -> None:
        self.partition = partition
        self.owner = Run(saga_id)
        self.owner.start(now=1_000)
        self.zombie = Run(saga_id)
        self.zombie.start(now=1_000)
        [send] = self.owner.sent
        self.zombie.feed(reply_to(send, now=1_500))
        deadline = self.owner.decisions[0].events[-1].deadline  # type: ignore[attr-defined]
        self.owner.feed(Tick(saga_id=saga_id, now=deadline + 1, jitter=0.0))
        started, timed_out = self.owner.records()
        _, succeeded = self.zombie.records()
        self.entries: list[LogRecord | Claim] = [
            claim(1, owner="host-a", partition=partition),
            at(started, 1),
            claim(2, partition=partition),
            at(succeeded, 1),
            at(timed_out, 2),
        ]

    def owner_rejects(self) -> LogRecord:
        """B's next record, at epoch 2: the verification, answered late,
        failed; the saga is rejected."""
        [send] = self.owner.sent
        self.owner.feed(
            reply_to(send, now=self.owner.records()[-1].at + 100, success=False)
        )
        return at(self.owner.records()[-1], 2)

    def zombie_goes_on(self) -> list[LogRecord]:
        """A's next two records, at epoch 1: the payment and the deposit
        succeed; as A has it, the saga is completed."""
        for payload in ({"paymentId": "p-1"}, {}):
            send = self.zombie.sent[-1]
            now = self.zombie.records()[-1].at + 100
            self.zombie.feed(reply_to(send, now=now, **payload))
        return [at(record, 1) for record in self.zombie.records()[-2:]]


def handed_over() -> tuple[list[LogRecord | Claim], SagaState, SagaState]:
    """:class:`Handover`'s log, and the states of B's and A's histories."""
    handover = Handover()
    owner, zombie = handover.owner.state, handover.zombie.state
    assert owner is not None and zombie is not None
    return handover.entries, owner, zombie


def random_history(rng: random.Random, saga_id: str) -> Run:
    """A saga driven by random inputs, as the engine would feed them."""
    run = Run(saga_id)
    now = 1_700_000_000_000 + rng.randrange(1_000_000)
    run.start(now=now)
    for n in range(rng.randrange(3, 25)):
        state = run.state
        assert state is not None
        now += rng.randrange(1, 20_000)
        roll = rng.random()
        if state.status.terminal:
            if state.status != "failed" or roll < 0.5:
                break
            run.retry(now, request_id=f"retry-{n}")
        elif state.held:
            run.release(now, origin=state.held, request_id=f"release-{n}")
        elif roll < 0.05:
            run.hold(now, origin=f"payment.events.process/0/{n}")
        elif roll < 0.10:
            run.cancel(now, request_id=f"cancel-{n}")
        elif state.retrying or roll < 0.35:
            tick = max(now, state.deadline)
            run.feed(Tick(saga_id=saga_id, now=tick, jitter=rng.random()))
            now = tick
        elif run.sent:
            success = roll < 0.8
            payload = {"paymentId": f"p-{n}"} if success else {}
            run.feed(reply_to(run.sent[-1], now, success=success, **payload))
    return run
