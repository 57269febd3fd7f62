"""The refund-refused fault of ``saga run --chaos`` (the fault matrix's row 11:
a compensation that keeps failing): struck, settled as an operator would, and
proved.

A few users each close their wallet as one of their sagas pays. Each of those
sagas is one whose deposit fails (its account is closed), so it must refund
the payment, and the payment service refuses every attempt: there is no
wallet to refund into. The saga gives up after its last attempt and ends
``failed``, with a dead letter telling a person to settle it. Then the
wallets reopen, and the run's operator retries every failed saga of those
users (``saga retry``): each ends ``compensated``, and the money audit that
follows holds for them as for every other saga.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

from actors.app.chaos import Fault
from actors.app.client import SagaClient
from actors.app.run.proof import Proof, patiently
from actors.app.run.workload import LIMIT, Workload
from actors.core import RETRY_STEP, SagaState, Status, replay_log
from events.errors import EventsError
from events.transport.dlq import DeadLetterQueue, LetterQuery
from events.transport.settings import KafkaSettings
from events.wire.dead_letters import LetterState

log = logging.getLogger(__name__)

#: How long each stage is waited for: a target's payment (the run sends it a
#: window or two after the strike), its failure (its refund's attempts, longer
#: if a later fault freezes the service), the retried sagas' compensation.
_PATIENCE_S: Final = 300.0
#: Who retries the failed sagas, as the log and the letters record it.
_OPERATOR: Final = "saga run --chaos"
#: The letters of sagas that failed: all, and those no one has settled yet.
_ANY_FAILED: Final = LetterQuery(saga_status=Status.FAILED)
_FAILED: Final = LetterQuery(
    saga_status=Status.FAILED, states=frozenset({LetterState.OPEN})
)


class RefundRefusal:
    """One refund-refused fault, from its strike to its proof."""

    def __init__(
        self,
        fault: Fault,
        kafka: KafkaSettings,
        payment: Any,
        load: Workload,
    ) -> None:
        self._fault = fault
        self._kafka = kafka
        self._payment = payment
        self._load = load
        #: The sagas whose users close their wallets as they pay: sagaId to user.
        self.targets: dict[str, str] = {}
        self.failed: set[str] = set()
        self.reopened: list[str] = []
        self.retried: set[str] = set()
        self.compensated: set[str] = set()
        self.resolved: set[str] = set()
        #: Why a stage did not come to pass ("" while all did).
        self.trouble = ""

    def strike(self, first: int) -> threading.Thread:
        """Choose the targets among the requests from index ``first`` (not
        sent yet), arm the payment service (it keeps the arming in its file,
        so a kill before the payments does not undo it), and start the thread
        that waits until the targets' wallets closed, then until the targets
        failed, and reopens the wallets."""
        self.targets = self._choose(first)
        if not self.targets:
            self.trouble = f"no saga from request {first:,} on would need a refund"
        else:
            ids = sorted(self.targets)
            patiently(lambda: self._payment.close_wallets_after_paying.remote(ids))
        work = threading.Thread(target=self._stages, daemon=True)
        work.start()
        return work

    def _choose(self, first: int) -> dict[str, str]:
        """The first ``count`` requests from ``first`` on whose saga will pay
        and then refund (a verified user, within the limit, into a closed
        account), each of a user of its own."""
        load = self._load
        chosen: dict[str, str] = {}
        for _, saga_input, saga_id in load.requests[first:]:
            user = saga_input["userId"]
            if (
                load.users.get(user) == "verified"
                and saga_input["amount"] <= LIMIT
                and load.accounts.get(saga_input["accountId"]) == "closed"
                and user not in chosen.values()
            ):
                chosen[saga_id] = user
                if len(chosen) == self._fault.count:
                    break
        return chosen

    def _stages(self) -> None:
        for stage in (self._until_closed, self._until_failed):
            if self.trouble:
                return
            try:
                self.trouble = stage()
            except Exception as exc:  # the proof says it; the thread ends
                self.trouble = f"{stage.__name__}: {exc!r}"

    def _until_closed(self) -> str:
        users = set(self.targets.values())
        deadline = time.monotonic() + _PATIENCE_S
        while not users <= set(
            patiently(lambda: self._payment.closed_wallets.remote())
        ):
            if time.monotonic() > deadline:
                return f"the wallets of {sorted(users)} did not all close"
            time.sleep(0.5)
        return ""

    def _until_failed(self) -> str:
        waited = _wait(self._kafka, set(self.targets), _PATIENCE_S)
        self.failed = {s for s, state in waited.items() if state is Status.FAILED}
        if self.failed != set(self.targets):
            others = sorted(
                f"{saga_id} ({state})"
                for saga_id, state in waited.items()
                if state is not Status.FAILED
            )
            return f"sagas whose refund was refused and that did not fail: {others}"
        self.reopened = patiently(lambda: self._payment.reopen_wallets.remote())
        return ""

    def settle(self) -> None:
        """Once the run's sagas have ended: retry every failed saga of a user
        whose wallet closed (the targets, and any other of theirs whose refund
        came while it was closed), until each is compensated."""
        if self.trouble or not self.reopened:
            return
        users = set(self.reopened)
        theirs = {i for _, inp, i in self._load.requests if inp["userId"] in users}
        with SagaClient(self._kafka) as client:
            states = {i: _status(h) for i, h in client.histories(theirs).items()}
            self.retried = {i for i, state in states.items() if state is Status.FAILED}
            for saga_id in sorted(self.retried):
                client.request(
                    saga_id,
                    RETRY_STEP,
                    reason="the wallet to refund into is open again",
                    operator=_OPERATOR,
                )
        waited = _wait(self._kafka, self.retried, _PATIENCE_S, past=Status.FAILED)
        self.compensated = {
            s for s, state in waited.items() if state is Status.COMPENSATED
        }
        if self.compensated != self.retried:
            left = sorted(self.retried - self.compensated)
            self.trouble = f"retried and not compensated: {left}"
        with DeadLetterQueue(self._kafka) as dlq:
            settled = [
                entry
                for entry in dlq.entries(_FAILED)
                if entry.letter.saga_id in self.compensated
            ]
            self.resolved = {
                e.letter.saga_id or ""
                for e in dlq.resolve(
                    settled, operator=_OPERATOR, reason="retried: compensated"
                )
            }

    def prove(self) -> Proof:
        """Fired if every target's wallet closed as it paid, the saga failed
        with a dead letter, and after its retry it was compensated."""
        with DeadLetterQueue(self._kafka) as dlq:
            lettered = {e.letter.saga_id for e in dlq.entries(_ANY_FAILED)} & set(
                self.targets
            )
        fired = (
            not self.trouble
            and bool(self.targets)
            and lettered == self.failed == set(self.targets)
            and self.failed <= self.compensated == self.retried == self.resolved
        )
        users = ", ".join(sorted(self.targets.values())) or "none"
        note = (
            f"wallets of {users} closed as their sagas paid; "
            f"{len(self.failed)} of {len(self.targets)} such sagas failed, "
            f"refunds refused to the last attempt, {len(lettered)} with a dead "
            f"letter; {len(self.reopened)} wallets reopened; {len(self.retried)} "
            f"failed sagas of theirs retried, {len(self.compensated)} compensated, "
            f"their {len(self.resolved)} letters resolved"
        )
        return Proof(
            self._fault.kind,
            fired,
            note + (f" ({self.trouble})" if self.trouble else ""),
        )


def _status(history: list[Any]) -> Status | None:
    state: SagaState | None = replay_log(history)
    return None if state is None else state.status


def _wait(
    kafka: KafkaSettings,
    ids: set[str],
    patience_s: float,
    past: Status | None = None,
) -> dict[str, Status | None]:
    """The sagas' statuses once each has ended other than ``past`` (a saga
    retried from ``failed`` is still failed until its retry is taken), or as
    they are after ``patience_s``. A read the broker does not answer (a
    later fault paused it) is tried again."""
    deadline = time.monotonic() + patience_s
    states: dict[str, Status | None] = dict.fromkeys(ids)
    while True:
        try:
            with SagaClient(kafka) as client:
                histories = client.histories(ids)
            states = {i: _status(h) for i, h in histories.items()}
        except EventsError as exc:  # the transport's, for a broker it lost
            log.info("reading the refused sagas' logs: %s; again", exc)
        if time.monotonic() > deadline or all(
            state is not None and state.terminal and state is not past
            for state in states.values()
        ):
            return states
        time.sleep(1.0)
