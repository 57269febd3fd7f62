"""``RouterActor``: consumes requests and replies, hands them to the owning host.

A router is a member of the orchestrator's consumer group over ``saga.requests``
and every reply topic the saga definitions listen on. It does not decode
messages: it reads each record's key (the sagaId), finds the saga's home
partition and, from the controller's routes, the host that owns it, and sends
each host its share of the batch in one Ray call, all hosts in parallel. An
offset is committed only after the host reported the batch durable; a host
that failed or timed out, or answered that it does not own a partition (it
moved), leaves those records uncommitted: the router fetches the routes again
and the records come back on the next poll. A move stalls a partition for the
time its new owner restores; nothing is dead-lettered for it.

More routers share the group: scale them like any consumer. Routing does not
depend on which router got which partition.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.core import SagaDefinition
from actors.engine.controller import Routes
from actors.engine.inbound import Inbound, home_of
from actors.engine.stats import HandleReport
from actors.engine.workers import (
    Fatal,
    connect_patiently,
    die_now,
    poll_until,
    start_vital,
)
from events.errors import EventsError, LogLostError
from events.transport.admin import TopicAdmin
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.settings import KafkaSettings
from events.transport.types import LogIdentity
from events.wire.latency import Histogram, HistogramCounts, snapshot
from events.wire.topics import SAGA_REQUESTS

log = logging.getLogger(__name__)

#: How old the routes may get before a router reads them again.
_ROUTES_EVERY_S: Final = 1.0

#: What a consumer loop retries in place: the broker and the network (the
#: transport raises nothing else for them).
BROKER_ERRORS: Final = (EventsError,)


def listened_topics(definitions: Mapping[str, SagaDefinition]) -> list[str]:
    """``saga.requests`` and every reply topic the definitions wait on (their
    previous versions' too: sagas run on to their end on those)."""
    topics = {SAGA_REQUESTS}
    for current in definitions.values():
        for step in (s for d in (current, *current.previous) for s in d.steps):
            topics.add(step.action.reply_topic)
            if step.compensation is not None:
                topics.add(step.compensation.reply_topic)
    return sorted(topics)


class RouterStats(msgspec.Struct, frozen=True):
    batches: int
    routed: int
    host_failures: int
    duplicates: int
    dead_letters: int
    consumed: dict[str, int]
    assigned: list[tuple[str, int]]
    #: Why the router stopped for good ("" while it runs): a lost log.
    fatal: str = ""
    #: Hosts that refuse work because their log lost records, and why.
    fatal_hosts: dict[str, str] = {}
    #: Records a host answered it did not own (moved), sent again later.
    not_owned: int = 0
    #: The version of the controller's routes in use.
    routes_version: int = -1
    #: The router's hops of a saga's path (:data:`events.wire.latency.HOPS`):
    #: a record's Kafka timestamp to its poll, and each host call's round trip.
    hops: dict[str, HistogramCounts] = {}
    #: The Ray node the router runs on (its process's, for people).
    node: str = ""


class RouterActor:
    """Routes consumed records to the :class:`~actors.engine.host.SagaHost`
    owning them, as the controller named ``controller`` says.

    ``identity`` is the cluster and topics the engine started on: a router
    (re)joining any other refuses to consume, rather than start over on a log
    that lost what was committed.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        controller: str,
        partition_count: int,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        call_timeout_s: float = 30.0,
        identity: LogIdentity | None = None,
    ) -> None:
        # By name, not by handle: a handle in the constructor's arguments
        # lives in the object store, and a restart needs it still there.
        self._controller: Any = ray.get_actor(controller)
        self._routes = Routes(-1, {})
        self._routes_at = 0.0
        self._handles: dict[str, Any] = {}
        self._count = partition_count
        self._timeout = call_timeout_s
        self._die_after: int | None = None
        self._armed_at = 0
        self._mark = ""
        self._acks = 0
        self._batches = 0
        self._routed = 0
        self._failures = 0
        self._not_owned = 0
        self._duplicates = 0
        self._consumed: dict[str, int] = {}
        self._dead_letters = 0
        self._failed_recently = False
        self._assigned: list[tuple[str, int]] = []
        self._fatal_hosts: dict[str, str] = {}
        self._hops = {"router_poll": Histogram(), "ray_call": Histogram()}

        def join() -> KafkaEventListener:
            if identity is not None:
                with TopicAdmin(kafka) as admin:
                    admin.check_identity(identity)
            return KafkaEventListener(
                kafka, topics, self._dispatch, group_id=group_id, decode=False
            )

        self._join = join
        self._stopping = threading.Event()
        self._fatal = Fatal()
        self._thread = start_vital("router", self._run, self._fatal)

    def _run(self) -> None:
        listener = connect_patiently(self._stopping, self._join, "router")
        if listener is None:
            return
        try:
            poll_until(
                self._stopping,
                lambda: self._poll(listener),
                BROKER_ERRORS,
                "router poll",
            )
        finally:
            listener.close()

    def _poll(self, listener: KafkaEventListener) -> None:
        listener.poll_once()
        self._assigned = sorted(
            (tp.topic, tp.partition) for tp in listener.assignment()
        )
        if self._failed_recently:
            # A host is down or restarting: let it restore before retrying.
            self._failed_recently = False
            time.sleep(0.5)

    def _dispatch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self._hops["router_poll"].ages(d.timestamp for d in deliveries)
        self._refresh(force=False)
        groups: dict[str, list[tuple[int, Delivery]]] = {}
        for delivery in deliveries:
            home = home_of(_inbound(delivery), self._count)
            owner = self._routes.owners.get(home)
            if owner is None:
                self._failed_recently = True  # moving: it comes back
                continue
            groups.setdefault(owner, []).append((home, delivery))
        calls = {}
        called = time.monotonic()
        for owner, group in groups.items():
            handle = self._handle(owner)
            if handle is not None:
                inbound = [_inbound(d) for _, d in group]
                calls[owner] = handle.handle.remote(inbound)
        done: list[Delivery] = []
        for owner, ref in calls.items():
            report = self._report(owner, ref, len(groups[owner]))
            if report is None:
                continue
            # From the calls' start to this answer: they run in parallel, and
            # the router waits for each.
            self._hops["ray_call"].since(called)
            moved = set(report.not_owned)
            if moved:
                # It moved since the routes were read: ask where it is now.
                self._not_owned += sum(1 for h, _ in groups[owner] if h in moved)
                self._failed_recently = True
            done.extend(d for h, d in groups[owner] if h not in moved)
            self._duplicates += report.duplicates
            self._dead_letters += report.dead_letters
            self._acks += 1
            if self._die_after is not None and self._acks >= self._die_after:
                armed = self._acks - self._armed_at
                die_now(self._mark, f"after {armed} host acks, before committing")
        if self._failed_recently:
            self._refresh(force=True)
        self._batches += 1
        self._routed += len(done)
        for delivery in done:
            self._consumed[delivery.topic] = self._consumed.get(delivery.topic, 0) + 1
        return done

    def _report(self, owner: str, ref: Any, records: int) -> HandleReport | None:
        """The host's report on its share, or ``None`` (records left alone)."""
        try:
            report: HandleReport = ray.get(ref, timeout=self._timeout)
            return report
        except LogLostError as exc:
            # The host refuses until a person acts: keep its records
            # uncommitted, and say so once, not at every poll.
            self._failures += 1
            self._failed_recently = True
            if owner not in self._fatal_hosts:
                self._fatal_hosts[owner] = exc.what
                log.error("host %s stopped: %s", owner, exc.what)
        except (RayError, GetTimeoutError) as exc:
            self._failures += 1
            self._failed_recently = True
            self._handles.pop(owner, None)
            log.warning("host %s did not take %d records: %s", owner, records, exc)
        return None

    def _refresh(self, *, force: bool) -> None:
        """The controller's routes, read again when forced or a second old."""
        now = time.monotonic()
        if not force and now - self._routes_at < _ROUTES_EVERY_S:
            return
        try:
            self._routes = ray.get(self._controller.routes.remote(), timeout=10)
            self._routes_at = now
        except (RayError, GetTimeoutError) as exc:
            log.warning("the controller did not answer for routes: %s", exc)

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = self._handles[name] = ray.get_actor(name)
            except ValueError:
                log.warning("no host %s (removed?): its records wait", name)
                self._failed_recently = True
        return handle

    # -- called through Ray ------------------------------------------------

    def pid(self) -> int:
        return os.getpid()

    def die_after_acks(self, acks: int, mark: str = "") -> None:
        """Fault injection for the crash tests and ``saga run --chaos``: after
        ``acks`` more host acknowledgements, and before committing them, the
        process kills itself with SIGKILL (Ray restarts it, unarmed), having
        written so to the file ``mark`` if one is named."""
        # Counted from now, as the schedule says.
        self._armed_at = self._acks
        self._die_after = self._acks + acks
        self._mark = mark

    def stats(self) -> RouterStats:
        return RouterStats(
            batches=self._batches,
            routed=self._routed,
            host_failures=self._failures,
            duplicates=self._duplicates,
            dead_letters=self._dead_letters,
            consumed=dict(self._consumed),
            assigned=self._assigned,
            fatal=self._fatal.reason,
            fatal_hosts=dict(self._fatal_hosts),
            not_owned=self._not_owned,
            routes_version=self._routes.version,
            hops=snapshot(self._hops),
            node=ray.get_runtime_context().get_node_id(),
        )

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)


def _inbound(delivery: Delivery) -> Inbound:
    return Inbound(
        delivery.topic,
        delivery.partition,
        delivery.offset,
        delivery.key,
        delivery.value,
    )
