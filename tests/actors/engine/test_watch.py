"""A host whose broker lost its log stops, loudly, instead of starting over.

The embedded broker keeps its logs in memory: stopped and started again on the
same port it is a broker that restarted empty (row 7 of the fault matrix).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

import pytest

from actors.engine.books import PartitionBooks
from actors.engine.claims import own
from actors.engine.host import SagaHost
from actors.engine.settings import HostSettings
from actors.engine.watch import LogWatch
from actors.errors import HostUnavailableError
from events.errors import LogLostError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.settings import KafkaSettings
from events.transport.types import Ack, LogIdentity
from events.wire.topics import ALL_TOPICS
from tests.actors.engine.test_host import PARTITIONS, Clock, start
from tests.conftest import private_broker, restart_empty

pytestmark = pytest.mark.broker


def restartable() -> AbstractContextManager[tuple[EmbeddedBroker, KafkaSettings]]:
    return private_broker(
        PARTITIONS, producer={"delivery_timeout_ms": 2_000, "request_timeout_ms": 1_000}
    )


def identity_of(kafka: KafkaSettings) -> LogIdentity:
    with TopicAdmin(kafka) as admin:
        return admin.identity(ALL_TOPICS)


def restart_empty_provisioned(
    broker: EmbeddedBroker, kafka: KafkaSettings
) -> LogIdentity:
    """The broker restarted empty, then its topics created anew, as `saga
    broker` does at start; the new topics' identity."""
    restart_empty(broker)
    with TopicAdmin(kafka) as admin:
        admin.ensure_topics(ALL_TOPICS, partitions=PARTITIONS)
    return identity_of(kafka)


def until_stopped(saga_host: SagaHost, within_s: float = 30.0) -> LogLostError:
    """Feed the host a new start until it refuses for good. The first append to
    the new broker may fail as unknown (the producer's id is gone), and a log
    shorter than what was read is only a suspicion for the grace period (2 s
    in the tests' settings): meanwhile the host answers "unavailable", and
    takes nothing."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            report = saga_host.handle([start("new-1", 10)])
        except HostUnavailableError:
            time.sleep(0.2)
            continue
        except LogLostError as exc:
            return exc
        raise AssertionError(f"the host took input on a log that lost: {report}")
    raise AssertionError("the host kept taking input on a log that lost its past")


@pytest.mark.parametrize("knows_identity", [True, False])
def test_a_broker_restarted_empty_stops_the_host_with_what_was_lost(
    knows_identity: bool,
) -> None:
    """With the engine's identity, the new topic ids give it away; without it,
    the log's end below what the host had read does."""
    with restartable() as (broker, kafka):
        identity = identity_of(kafka) if knows_identity else None
        saga_host = own(
            SagaHost(
                kafka,
                PARTITIONS,
                HostSettings(),
                clock=Clock(),
                start_timers=False,
                identity=identity,
            ),
            range(PARTITIONS),
        )
        try:
            for i in range(6):
                assert saga_host.handle([start(f"s-{i}", i)]).applied == 1
            assert saga_host.stats().in_flight == 6
            fresh = restart_empty_provisioned(broker, kafka)
            if identity is not None:
                assert identity.changes(fresh)  # the loss is real: new topic ids
            lost = until_stopped(saga_host)
            expected = "deleted and created again" if knows_identity else "below"
            assert expected in str(lost)
            stats = saga_host.stats()
            assert stats.log_lost == lost.what
            assert saga_host.metrics().log_lost
            # The sagas are not silently gone, and every later input is refused.
            assert stats.in_flight == 6
            with pytest.raises(LogLostError):
                saga_host.handle([start("later", 20)])
            with pytest.raises(LogLostError):
                saga_host.fire_timers()
        finally:
            saga_host.close()


def test_a_host_starting_on_a_broker_that_lost_its_topics_stays_up_to_say_so() -> None:
    with restartable() as (broker, kafka):
        identity = identity_of(kafka)
        restart_empty_provisioned(broker, kafka)
        saga_host = SagaHost(
            kafka, PARTITIONS, clock=Clock(), start_timers=False, identity=identity
        )
        try:
            with pytest.raises(LogLostError):
                saga_host.acquire(dict.fromkeys(range(PARTITIONS), 1))
            assert "saga.events" in saga_host.stats().log_lost
            with pytest.raises(LogLostError, match="the broker lost saga data"):
                saga_host.handle([start("s-1")])
        finally:
            saga_host.close()


def test_an_append_acknowledged_without_an_offset_is_no_loss() -> None:
    """The broker answers a batch it already had (a retried send whose first
    acknowledgement was lost) with offset -1: that says nothing of where."""
    part = PartitionBooks(retention=10)
    part.end = 1_936
    LogWatch.check_ack(1, part, Ack("saga.events", 1, -1))
    LogWatch.check_ack(1, part, Ack("saga.events", 1, 1_936))
    with pytest.raises(LogLostError, match="offset 1935, below offset 1936"):
        LogWatch.check_ack(1, part, Ack("saga.events", 1, 1_935))


def test_a_shorter_log_is_a_suspicion_until_it_lasts_the_grace_period() -> None:
    """A new leader's high watermark can trail the old one's for a moment:
    a reload that finds the log short waits (the host is "unavailable") and
    calls it lost only once it stayed short for the whole grace period."""
    now = [100.0]
    watch = LogWatch(None, grace_ms=30_000, clock=lambda: now[0])
    part = PartitionBooks(retention=10)
    part.end = 40
    with pytest.raises(HostUnavailableError, match="waiting up to 30 s"):
        watch.check_reloaded({0: 50}, {0: part})
    now[0] += 29
    with pytest.raises(HostUnavailableError):
        watch.check_reloaded({0: 50}, {0: part})
    part.end = 50  # caught up: the suspicion is gone
    watch.check_reloaded({0: 50}, {0: part})
    part.end = 40
    now[0] += 29
    with pytest.raises(HostUnavailableError):  # a new suspicion starts afresh
        watch.check_reloaded({0: 50}, {0: part})
    now[0] += 30
    with pytest.raises(LogLostError, match="partition 0 ends at 40, below offset 50"):
        watch.check_reloaded({0: 50}, {0: part})
