"""``Controller``: grants partitions to hosts, moves them, and tells routers where.

One controller per engine, a Ray actor named after it. Why a controller and not
the consumer group's assignment: the hosts do not consume (routers do), a
partition's move must be ordered (release, then a claim at an epoch no one
used, then the routes), and the embedded broker's group protocol offers no
cooperative rebalancing to build that on. Safety does not rest on the
controller: the claims in the log fence a stale owner whatever the controller
believes (:mod:`actors.core.ownership`); the controller only keeps ownership
moving and balanced.

Each round (every ``tick_s``) it:

1. finds the engine's hosts by their Ray names (so a restarted controller, or
   hosts added by ``Engine.scale``, need no registration) and asks each what
   it owns; a host that does not answer for ``host_timeout_s`` is dead to it;
2. takes each partition's owner to be the live host holding it at the highest
   epoch (a host that lost a partition to a newer claim says so; one of
   another engine is left alone);
3. plans moves (:mod:`actors.engine.assignment`): orphans back to their
   restarted host or to the least loaded, a draining host's away, a few more
   to balance;
4. releases each moved partition from its old owner (a last snapshot), then
   grants it to the new owner at one above the highest epoch known; a grant
   that finds a higher epoch in force is tried again next round above it;
5. publishes the routes, with a new version when they changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.engine.assignment import Move, plan
from actors.engine.claims import Ownership, Taken

log = logging.getLogger(__name__)


class Routes(msgspec.Struct, frozen=True):
    """Where each partition's records go: the owning host's Ray name."""

    version: int
    owners: dict[int, str]


class PartitionOwner(msgspec.Struct, frozen=True):
    """One partition as the controller sees it, for ``saga status``."""

    partition: int
    host: str
    epoch: int
    node: str = ""
    #: "owned", "moving" (granted, restoring), "none" or "other engine".
    state: str = "owned"


class _Host:
    """What the controller knows of one host."""

    __slots__ = ("handle", "last_ok", "report")

    def __init__(self, handle: Any, now: float) -> None:
        self.handle = handle
        self.last_ok = now
        self.report: Ownership | None = None


def host_prefix(engine: str) -> str:
    """The Ray names of an engine's hosts start with this."""
    return f"saga-host-{engine}-"


def router_prefix(engine: str) -> str:
    """The Ray names of an engine's routers start with this."""
    return f"saga-router-{engine}-"


def controller_name(engine: str) -> str:
    return f"saga-controller-{engine}"


def actor_names(prefix: str) -> list[str]:
    """The named actors of this Ray namespace whose names start with ``prefix``."""
    return [n for n in ray.util.list_named_actors() if n.startswith(prefix)]


class Controller:
    """Owns the assignment of ``partitions`` to the hosts of ``engine``."""

    def __init__(
        self,
        engine: str,
        partitions: int,
        started: int = 0,
        *,
        host_timeout_s: float = 10.0,
        call_timeout_s: float = 120.0,
        tick_s: float = 0.5,
        moves_per_round: int = 4,
    ) -> None:
        self._engine = engine
        self._partitions = partitions
        #: When the engine started (epoch ms): a claim by another engine made
        #: since is a newer engine's (a rolling deploy), and it is left to it.
        self._started = started
        self._host_timeout_s = host_timeout_s
        self._call_timeout_s = call_timeout_s
        self._tick_s = tick_s
        self._limit = moves_per_round
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._draining: set[str] = set()
        self._owners: dict[int, tuple[str, int]] = {}
        self._last: dict[int, str] = {}
        self._epochs: dict[int, int] = {}
        self._foreign: dict[int, Taken] = {}
        self._moving: dict[int, str] = {}
        self._routes = Routes(0, {})
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="controller", daemon=True
        )
        self._thread.start()

    # -- called through Ray --------------------------------------------------

    def routes(self) -> Routes:
        return self._routes

    def pid(self) -> int:
        return os.getpid()

    def owners(self) -> list[PartitionOwner]:
        """Every partition's owner, epoch and node, or why it has none."""
        with self._lock:
            out = []
            for number in range(self._partitions):
                name, epoch = self._owners.get(
                    number, ("", self._epochs.get(number, 0))
                )
                state = "owned" if name else "none"
                if number in self._moving:
                    # The epoch it is being granted at is one above this one.
                    name, state = self._moving[number], "moving"
                elif number in self._foreign:
                    taken = self._foreign[number]
                    name, epoch, state = taken.owner, taken.epoch, "other engine"
                report = self._hosts[name].report if name in self._hosts else None
                node = report.host.node if report else ""
                out.append(PartitionOwner(number, name, epoch, node, state))
            return out

    def drain(self, names: Sequence[str]) -> None:
        """Move every partition off these hosts (they are to be removed)."""
        with self._lock:
            self._draining.update(names)

    def drained(self, names: Sequence[str]) -> bool:
        """Whether these hosts own nothing now."""
        with self._lock:
            return not any(h in names for h, _ in self._owners.values())

    def settled(self) -> bool:
        """Every partition owned by a live host (or by another engine), and no
        draining host holds one."""
        with self._lock:
            return all(
                number in self._foreign
                or (
                    number in self._owners
                    and self._owners[number][0] not in self._draining
                )
                for number in range(self._partitions)
            )

    def balanced(self, hosts: Sequence[str] = ()) -> bool:
        """Settled, ``hosts`` known and answering, and with no move left to
        make (a scale has finished)."""
        if not self.settled():
            return False
        with self._lock:
            if any(h not in self._hosts or not self._alive(h) for h in hosts):
                return False
            return not self._moving and not self._plan()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    # -- the rounds ----------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self._tick_s):
            try:
                self._round()
            except Exception:
                log.exception("a controller round failed; the next one tries again")

    def _round(self) -> None:
        self._discover()
        self._poll()
        with self._lock:
            moves = self._plan()
        if moves:
            self._move(moves)
            self._poll()
        self._publish()

    def _plan(self) -> list[Move]:
        """This round's moves, from what the controller knows (under its lock)."""
        return plan(
            self._partitions,
            {n: h for n, (h, _) in self._owners.items()},
            sorted(h for h in self._hosts if self._able(h)),
            last=self._last,
            draining=self._draining,
            foreign=self._foreign,
            limit=self._limit,
        )

    def _discover(self) -> None:
        names = set(actor_names(host_prefix(self._engine)))
        now = time.monotonic()
        with self._lock:
            for name in names - set(self._hosts):
                try:
                    self._hosts[name] = _Host(ray.get_actor(name), now)
                except ValueError:
                    continue  # gone between the listing and the lookup
            for name in set(self._hosts) - names:
                del self._hosts[name]  # killed: removed by scale-in
                self._draining.discard(name)

    def _alive(self, name: str) -> bool:
        host = self._hosts[name]
        return time.monotonic() - host.last_ok < self._host_timeout_s

    def _able(self, name: str) -> bool:
        """Alive, and able to take partitions: its log whole, its rebuilds
        from the log not failing (granted one, it would only fail again)."""
        report = self._hosts[name].report
        return self._alive(name) and not (
            report is not None and (report.log_lost or report.failing)
        )

    def _poll(self) -> None:
        """Each host's own account of what it owns; owners follow from it."""
        with self._lock:
            hosts = dict(self._hosts)
        calls = {name: host.handle.ownership.remote() for name, host in hosts.items()}
        reports = _gather(calls, timeout_s=min(2.0, self._host_timeout_s / 2))
        now = time.monotonic()
        with self._lock:
            for name, report in reports.items():
                if name in self._hosts and isinstance(report, Ownership):
                    self._hosts[name].last_ok = now
                    self._hosts[name].report = report
            self._settle()

    def _settle(self) -> None:
        owners: dict[int, tuple[str, int]] = {}
        for name, host in self._hosts.items():
            if host.report is None or not self._able(name):
                continue
            for number, taken in host.report.fenced.items():
                self._learn(number, taken.epoch)
                if taken.engine and taken.engine != self._engine:
                    self._foreign[number] = taken
            for number, epoch in host.report.owned.items():
                self._learn(number, epoch)
                if number not in owners or epoch > owners[number][1]:
                    owners[number] = (name, epoch)
        for number, (name, epoch) in owners.items():
            foreign = self._foreign.get(number)
            if foreign is not None and foreign.epoch < epoch:
                del self._foreign[number]
            self._last[number] = name
        for number in list(self._foreign):
            owners.pop(number, None)
        self._owners = owners

    def _newer_engine(self, taken: Taken) -> bool:
        """A grant lost to a claim another engine made after this one
        started: that engine is the newer, and keeping on would only take
        the partition back and forth (older engines' claims are taken over)."""
        return (
            not taken.won
            and bool(taken.engine)
            and taken.engine != self._engine
            and taken.at >= self._started
        )

    def _learn(self, number: int, epoch: int) -> None:
        self._epochs[number] = max(self._epochs.get(number, 0), epoch)

    def _move(self, moves: list[Move]) -> None:
        with self._lock:
            handles = {name: host.handle for name, host in self._hosts.items()}
        releases: dict[str, list[int]] = {}
        grants: dict[str, dict[int, int]] = {}
        for move in moves:
            if move.source is not None and move.source in handles:
                releases.setdefault(move.source, []).append(move.partition)
            with self._lock:
                epoch = self._epochs.get(move.partition, 0) + 1
                self._moving[move.partition] = move.target
            grants.setdefault(move.target, {})[move.partition] = epoch
        # A release that fails or times out is no matter: the claim fences.
        _gather(
            {name: handles[name].release.remote(ps) for name, ps in releases.items()},
            timeout_s=self._call_timeout_s,
        )
        results = _gather(
            {name: handles[name].acquire.remote(g) for name, g in grants.items()},
            timeout_s=self._call_timeout_s,
        )
        with self._lock:
            for name, result in results.items():
                if isinstance(result, BaseException):
                    log.warning(
                        "granting %s to %s failed: %s", grants[name], name, result
                    )
                    continue
                for taken in result:
                    self._learn(taken.partition, taken.epoch)
                    if self._newer_engine(taken):
                        self._foreign[taken.partition] = taken
                    elif not taken.won:
                        log.info(
                            "partition %d is held at epoch %d by %s: granting it "
                            "again above that",
                            taken.partition,
                            taken.epoch,
                            taken.owner or "no one known",
                        )
            for move in moves:
                self._moving.pop(move.partition, None)

    def _publish(self) -> None:
        with self._lock:
            owners = {n: h for n, (h, _) in self._owners.items()}
            owners.update({n: t.owner for n, t in self._foreign.items()})
            if owners != self._routes.owners:
                self._routes = Routes(self._routes.version + 1, owners)


def _gather(calls: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """Each call's result, or the exception it raised or timed out with."""
    out: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    for name, ref in calls.items():
        try:
            out[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except (RayError, GetTimeoutError) as exc:
            out[name] = exc
    return out
