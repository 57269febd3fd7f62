"""``RouterActor``: consumes requests and replies, hands them to the owning host.

A router is a member of the orchestrator's consumer group over ``saga.requests``
and every reply topic the saga definitions listen on. It does not decode
messages: it reads each record's key (the sagaId), finds the saga's home
partition and so its host, and sends each host its share of the batch in one
Ray call, all hosts in parallel. An offset is committed only after the host
reported the batch durable; a host that failed or timed out leaves its records
uncommitted, and they come back on the next poll.

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
from actors.engine.inbound import Inbound
from actors.engine.stats import HandleReport
from actors.engine.workers import (
    Fatal,
    connect_patiently,
    die_now,
    poll_until,
    start_vital,
)
from events.errors import EventsError, LogLostError, MessageDecodeError
from events.transport.admin import TopicAdmin
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.partitions import home_partition
from events.transport.settings import KafkaSettings
from events.transport.types import LogIdentity
from events.wire.messages import decode_json
from events.wire.topics import SAGA_REQUESTS

log = logging.getLogger(__name__)

#: What a consumer loop retries in place: the broker and the network (the
#: transport raises nothing else for them).
BROKER_ERRORS: Final = (EventsError,)


def listened_topics(definitions: Mapping[str, SagaDefinition]) -> list[str]:
    """``saga.requests`` and every reply topic the definitions wait on."""
    topics = {SAGA_REQUESTS}
    for definition in definitions.values():
        for step in definition.steps:
            topics.add(step.action.reply_topic)
            if step.compensation is not None:
                topics.add(step.compensation.reply_topic)
    return sorted(topics)


class _SagaIdOnly(msgspec.Struct, rename="camel"):
    saga_id: str = ""


_SAGA_ID_ONLY: Final = msgspec.json.Decoder(_SagaIdOnly)


def home_of(delivery: Delivery, partition_count: int) -> int:
    """The partition whose host takes ``delivery``: its saga's home partition,
    by its key, or else by the sagaId in its value. With neither, the record's
    own partition: that host dead-letters it. Never raises for any record."""
    saga_id = delivery.key
    if saga_id is None:
        try:
            saga_id = decode_json(_SAGA_ID_ONLY, delivery.value).saga_id
        except MessageDecodeError:
            saga_id = ""
    if not saga_id:
        return delivery.partition
    return home_partition(saga_id, partition_count)


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
    fatal_hosts: dict[int, str] = {}


class RouterActor:
    """Routes consumed records to the :class:`~actors.engine.host.SagaHost` owning them.

    ``hosts`` are the Ray actor names of the hosts; ``owners`` maps each
    partition number to an index into them. ``identity`` is the cluster and
    topics the engine started on: a router (re)joining any other refuses to
    consume, rather than start over on a log that lost what was committed.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        hosts: Sequence[str],
        owners: Mapping[int, int],
        partition_count: int,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        call_timeout_s: float = 120.0,
        identity: LogIdentity | None = None,
    ) -> None:
        # Hosts by name, not by handle: a handle in the constructor's arguments
        # lives in the object store, and a restart needs it still there.
        self._hosts: list[Any] = [ray.get_actor(name) for name in hosts]
        self._owners = dict(owners)
        self._count = partition_count
        self._timeout = call_timeout_s
        self._die_after: int | None = None
        self._mark = ""
        self._acks = 0
        self._batches = 0
        self._routed = 0
        self._failures = 0
        self._duplicates = 0
        self._consumed: dict[str, int] = {}
        self._dead_letters = 0
        self._failed_recently = False
        self._assigned: list[tuple[str, int]] = []
        self._fatal_hosts: dict[int, str] = {}

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
        groups: dict[int, list[Delivery]] = {}
        for delivery in deliveries:
            home = home_of(delivery, self._count)
            groups.setdefault(self._owners[home], []).append(delivery)
        calls = {
            host: self._hosts[host].handle.remote([_inbound(d) for d in group])
            for host, group in groups.items()
        }
        done: list[Delivery] = []
        for host, ref in calls.items():
            try:
                report: HandleReport = ray.get(ref, timeout=self._timeout)
            except LogLostError as exc:
                # The host refuses until a person acts: keep its records
                # uncommitted, and say so once, not at every poll.
                self._failures += 1
                self._failed_recently = True
                if host not in self._fatal_hosts:
                    self._fatal_hosts[host] = exc.what
                    log.error("host %d stopped: %s", host, exc.what)
                continue
            except (RayError, GetTimeoutError) as exc:
                self._failures += 1
                self._failed_recently = True
                log.warning(
                    "host %d did not take %d records: %s", host, len(groups[host]), exc
                )
                continue
            done.extend(groups[host])
            self._duplicates += report.duplicates
            self._dead_letters += report.dead_letters
            self._acks += 1
            if self._die_after is not None and self._acks >= self._die_after:
                die_now(self._mark, f"after {self._acks} host acks, before committing")
        self._batches += 1
        self._routed += len(done)
        for delivery in done:
            self._consumed[delivery.topic] = self._consumed.get(delivery.topic, 0) + 1
        return done

    # -- called through Ray ------------------------------------------------

    def pid(self) -> int:
        return os.getpid()

    def die_after_acks(self, acks: int, mark: str = "") -> None:
        """Fault injection for the crash tests and ``saga run --chaos``: after
        ``acks`` more host acknowledgements, and before committing them, the
        process kills itself with SIGKILL (Ray restarts it, unarmed), having
        written so to the file ``mark`` if one is named."""
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
