"""Striking the faults of a chaos schedule, and proving each one happened.

A fault that did not fire proves nothing, so each strike keeps what it needs
to show that it did: the pid a kill ended and the new one Ray started, the
process state a pause was seen in and for how long, the offsets at which the
broker acknowledged each copy or poison record, and the dead letter each
poison record ended as. :meth:`Chaos.proofs` checks them after the run has
drained; a fault that cannot be proved counts against the run's audit. The
strikes that publish records are :mod:`~actors.app.run.records`; the refund
refusal, which an operator settles, is :mod:`~actors.app.run.refunds`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import ray
from ray.exceptions import RayError

from actors.app.chaos import Fault
from actors.app.platform import Platform
from actors.app.run.proof import Proof, patiently
from actors.app.run.records import (
    Publication,
    duplicates,
    idempotency_cleanup,
    poison,
)
from actors.app.run.refunds import RefundRefusal
from actors.app.run.workload import Workload
from actors.engine.claims import Taken
from events.transport.broker import EmbeddedBroker
from events.transport.procstat import STATE, stat_fields
from events.transport.types import TP

log = logging.getLogger(__name__)

#: How long the next fault waits for an armed actor to meet its moment.
_ARMED_S: Final = 60.0
#: How long a paused host, woken, is asked what was claimed from it meanwhile.
_WAKE_S: Final = 60.0


def process_state(pid: int) -> str:
    """The one-letter state of process ``pid`` (``T``: stopped), "" if gone."""
    try:
        return stat_fields(pid)[STATE]
    except OSError:
        return ""


class Chaos:
    """Strikes each fault of ``faults`` once, as the run's sagas end."""

    def __init__(
        self,
        faults: Sequence[Fault],
        platform: Platform,
        brokers: Sequence[EmbeddedBroker],
        load: Workload,
        dlq_from: Mapping[TP, int],
        data_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        self._pending = list(faults)
        self._kafka = platform.kafka
        self._hosts = list(platform.engine.hosts)
        self._routers = list(platform.engine.routers)
        self._participants = platform.participants
        self._projection = platform.projection
        self._broker = brokers[0] if brokers else None
        self._load = load
        #: How many requests the run has started: a strike that must meet
        #: sagas not sent yet picks them past it.
        self._sent = 0
        self._dlq_from = dict(dlq_from)
        #: Where an actor armed to kill itself writes that it did, first.
        self._marks = data_dir / "chaos"
        self._marks.mkdir(exist_ok=True)
        self._say = say
        #: Pauses, freezes and publishing: the next fault waits for each.
        self._threads: list[threading.Thread] = []
        #: Per target, the armed kill a later fault at it waits for.
        self._busy: dict[str, threading.Thread] = {}
        #: At work beside the run and the next faults: armed kills waiting
        #: for their moment, a refund refusal waiting for its sagas.
        self._workers: list[threading.Thread] = []
        #: Processes stopped and not yet sent SIGCONT.
        self._stopped_pids: set[int] = set()
        #: Per fault struck: a function that proves it (run after the drain).
        self._provers: list[tuple[Fault, Callable[[], Proof]]] = []
        #: What an operator does about a fault once the run's sagas ended.
        self._settlers: list[Callable[[], None]] = []
        #: What happened, as it happened (the run's summary lists it).
        self.log: list[str] = []

    def tick(self, ended: float) -> None:
        """Strike every fault due at ``ended`` (the share of sagas ended).

        One at a time: while a pause or a freeze lasts, or an armed kill has
        not fired yet, the next waits (a fault struck meanwhile would meet the
        first, not the platform)."""
        while (
            self._pending
            and self._pending[0].at <= ended
            and not self._stopped()
            and not self._at_busy(self._pending[0])
        ):
            fault = self._pending.pop(0)
            strike = getattr(self, "_" + fault.kind.replace("-", "_"))
            prover = strike(fault)
            self._provers.append((fault, prover))
            self._note(f"at {ended:.0%} of sagas ended: {fault.describe()}")

    def finish(self) -> None:
        """Strike what is still due (a run that ended early), wait for every
        pause and freeze to be over, then settle what needs an operator."""
        while True:
            for thread in [*self._threads, *self._workers]:
                thread.join()
            if not self._pending:
                break
            self.tick(1.0)
        for settle in self._settlers:
            settle()

    def sent(self, count: int) -> None:
        """The run has started its first ``count`` requests."""
        self._sent = count

    def unstruck(self) -> bool:
        """Whether faults of the schedule are still to strike."""
        return bool(self._pending)

    def _stopped(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _at_busy(self, fault: Fault) -> bool:
        """Whether ``fault`` strikes a target still busy with an earlier one
        (two kinds of kill drawn for one service: the second, struck first,
        would take the first's arming with the process)."""
        busy = self._busy.get(fault.target)
        return busy is not None and busy.is_alive()

    def _hold(self, target: str, name: str, wait: Callable[[], None]) -> None:
        """Keep faults at ``target`` back until ``wait`` returns."""
        thread = threading.Thread(target=wait, name=name, daemon=True)
        thread.start()
        self._busy[target] = thread
        self._workers.append(thread)

    def close(self) -> None:
        """Let every process a fault stopped run again (a run cut short)."""
        for pid in list(self._stopped_pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
            self._stopped_pids.discard(pid)

    def proofs(self) -> list[Proof]:
        return [prove() for _, prove in self._provers]

    def _note(self, text: str) -> None:
        self.log.append(text)
        self._say(f"chaos: {text}")

    # -- kills ---------------------------------------------------------------

    def _actor(self, fault: Fault) -> Any:
        kind, _, number = fault.target.partition(" ")
        match kind:
            case "host":
                return self._hosts[int(number)]
            case "router":
                return self._routers[int(number)]
            case "projection":
                return self._projection
            case _:
                return self._participants[fault.target]

    def _host_kill(self, fault: Fault) -> Callable[[], Proof]:
        actor = self._actor(fault)
        pid = _pid(actor)
        os.kill(pid, signal.SIGKILL)
        return lambda: self._restarted(fault, actor, pid, None)

    def _router_kill(self, fault: Fault) -> Callable[[], Proof]:
        return self._armed(fault, "die_after_acks", fault.count)

    def _participant_kill(self, fault: Fault) -> Callable[[], Proof]:
        return self._armed(fault, "die_after_next_commit")

    def _participant_kill_early(self, fault: Fault) -> Callable[[], Proof]:
        return self._armed(fault, "die_before_next_commit")

    def _projection_kill(self, fault: Fault) -> Callable[[], Proof]:
        return self._armed(fault, "die_after_next_batch")

    def _armed(self, fault: Fault, method: str, *args: int) -> Callable[[], Proof]:
        """Arm an actor to kill itself at its worst moment; it writes ``mark``
        just before, so that no other death passes for this one."""
        actor = self._actor(fault)
        pid = _pid(actor)
        mark = self._marks / f"{len(self._provers)}-{fault.kind}"
        try:
            ray.get(getattr(actor, method).remote(*args, mark=str(mark)))
        except RayError:
            # Armed, it may die before the call's answer gets back (a router
            # armed for one acknowledgement meets it at once): the mark, or
            # its absence, proves which it was.
            log.info("%s: no answer to the arming call; its mark will tell", fault)
        self._hold(fault.target, f"chaos-{fault.kind}", lambda: _until_marked(mark))
        return lambda: self._restarted(fault, actor, pid, mark)

    def _restarted(
        self, fault: Fault, actor: Any, pid: int, mark: Path | None
    ) -> Proof:
        """Fired if the process is gone, Ray runs the actor in another, and
        (an armed kill) the process marked that it killed itself there."""
        try:
            now = _pid(actor)
        except RayError as exc:
            return Proof(fault.kind, False, f"{fault.target}: no answer ({exc})")
        gone = not os.path.exists(f"/proc/{pid}") or process_state(pid) == "Z"
        died = ""
        if mark is not None:
            died = mark.read_text().strip() if mark.exists() else ""
            if died.split(" ", 1)[0] != str(pid):
                return Proof(
                    fault.kind,
                    False,
                    f"{fault.target}: pid {pid} never marked its death "
                    f"({died or 'no mark'}); now pid {now}",
                )
        fired = now != pid and gone
        where = f" ({died.split(' ', 1)[1]})" if " " in died else ""
        return Proof(
            fault.kind,
            fired,
            f"{fault.target}: pid {pid} "
            + (f"died{where}, restarted (now pid {now})" if fired else "still running"),
        )

    # -- stops -----------------------------------------------------------------

    def _broker_pause(self, fault: Fault) -> Callable[[], Proof]:
        assert self._broker is not None  # chosen_faults saw to it
        return self._stop_for(fault, self._broker.pid)

    def _service_freeze(self, fault: Fault) -> Callable[[], Proof]:
        return self._stop_for(fault, _pid(self._participants[fault.target]))

    def _host_pause(self, fault: Fault) -> Callable[[], Proof]:
        """A host stopped past the controller's timeout: fired if it was seen
        stopped throughout and, meanwhile, another host claimed a partition
        of it. The host learns so once it wakes, from the log; its account is
        taken then (a later fault may kill it, and its next process knows
        nothing of this one's losses)."""
        actor = self._actor(fault)
        paused_at = int(time.time() * 1000)
        lost: dict[int, Taken] = {}

        def losses() -> None:
            deadline = time.monotonic() + _WAKE_S
            while not lost and time.monotonic() < deadline:
                report = patiently(lambda: actor.ownership.remote())
                lost.update(
                    (n, t) for n, t in report.fenced.items() if t.at >= paused_at
                )
                time.sleep(0.5)

        stopped = self._stop_for(fault, _pid(actor), losses)

        def prove() -> Proof:
            seen = stopped()
            moved = ", ".join(
                f"{n} to {t.owner} at epoch {t.epoch}" for n, t in sorted(lost.items())
            )
            return Proof(
                fault.kind,
                seen.fired and bool(lost),
                f"{seen.note}; "
                + (
                    f"meanwhile claimed: partition {moved}"
                    if lost
                    else f"no partition of it claimed meanwhile (asked {_WAKE_S:g} s)"
                ),
            )

        return prove

    def _stop_for(
        self,
        fault: Fault,
        pid: int,
        woken: Callable[[], None] = lambda: None,
    ) -> Callable[[], Proof]:
        """SIGSTOP ``pid`` now and SIGCONT it ``fault.seconds`` later, from a
        thread, so the run goes on reporting meanwhile; ``woken`` runs in that
        thread once it runs again (the next fault waits for it too)."""
        seen: dict[str, float] = {}
        os.kill(pid, signal.SIGSTOP)
        self._stopped_pids.add(pid)
        stopped_at = time.monotonic()

        def thaw() -> None:
            deadline = stopped_at + fault.seconds
            while (left := deadline - time.monotonic()) > 0:
                if process_state(pid) == "T":
                    seen.setdefault("first", time.monotonic() - stopped_at)
                    seen["last"] = time.monotonic() - stopped_at
                time.sleep(min(0.5, left))
            os.kill(pid, signal.SIGCONT)
            self._stopped_pids.discard(pid)
            time.sleep(0.2)
            seen["after"] = 0.0 if process_state(pid) == "T" else 1.0
            woken()

        thread = threading.Thread(target=thaw, name=f"chaos-{fault.kind}", daemon=True)
        thread.start()
        self._threads.append(thread)

        def prove() -> Proof:
            # Seen stopped from the first look to the end, then running again.
            lasted = seen.get("last", 0.0)
            fired = (
                "first" in seen and lasted >= fault.seconds - 1 and seen.get("after")
            )
            return Proof(
                fault.kind,
                bool(fired),
                f"{fault.target} (pid {pid}) seen stopped for {lasted:.1f} s of "
                f"{fault.seconds:g} s, then "
                + ("running again" if seen.get("after") else "still stopped"),
            )

        return prove

    # -- records -----------------------------------------------------------------

    def _duplicates(self, fault: Fault) -> Callable[[], Proof]:
        return self._beside(fault, duplicates(fault, self._kafka, self._load.requests))

    def _idempotency_cleanup(self, fault: Fault) -> Callable[[], Proof]:
        service = self._participants[fault.target]
        return self._beside(fault, idempotency_cleanup(fault, self._kafka, service))

    def _poison(self, fault: Fault) -> Callable[[], Proof]:
        return self._beside(fault, poison(fault, self._kafka, self._dlq_from))

    def _beside(self, fault: Fault, publication: Publication) -> Callable[[], Proof]:
        """Its records read and published from a thread: that takes seconds,
        in which the run's loop must go on (its progress, its projection lag
        samples). The next fault waits for it, as for a pause: a broker
        paused meanwhile would meet this publishing, not the platform."""
        thread = threading.Thread(
            target=publication.work, name=f"chaos-{fault.kind}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

        def prove() -> Proof:
            thread.join()
            return publication.prove()

        return prove

    def _refund_refused(self, fault: Fault) -> Callable[[], Proof]:
        refusal = RefundRefusal(
            fault, self._kafka, self._participants[fault.target], self._load
        )
        self._workers.append(refusal.strike(self._sent))
        self._settlers.append(refusal.settle)
        return refusal.prove


def _until_marked(mark: Path, patience_s: float = _ARMED_S) -> None:
    """Until an armed actor marked its death, or ``patience_s`` passed (its
    moment may never come: a router armed once no traffic is left)."""
    deadline = time.monotonic() + patience_s
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _pid(actor: Any) -> int:
    """The actor's process id, waiting out a restart."""
    pid: int = patiently(lambda: actor.pid.remote())
    return pid
