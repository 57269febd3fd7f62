"""Row 17 of the fault matrix: a wall clock that jumps moves no saga timer.

The host's clock port is :class:`SteadyClock`: wall time read once, then
monotonic time added. The tests jump a wall clock of their own by an hour,
both ways, and show the timers keep to monotonic time, while the same host
on the bare wall clock would have given up on a step still in time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.engine.claims import own
from actors.engine.clock import SteadyClock
from actors.engine.host import SagaHost
from actors.engine.settings import HostSettings
from events.transport.settings import KafkaSettings
from tests.actors.engine.test_host import PARTITIONS, start
from tests.conftest import private_kafka

HOUR = 3600.0


class Dial:
    """A clock a test sets by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_steady_clock_ignores_wall_jumps_and_follows_monotonic_time() -> None:
    wall, monotonic = Dial(1_800_000_000.0), Dial(50.0)
    clock = SteadyClock(wall, monotonic)
    assert clock() == 1_800_000_000.0
    wall.now += HOUR  # an NTP step forward
    assert clock() == 1_800_000_000.0
    wall.now -= 2 * HOUR  # and back past where it was
    assert clock() == 1_800_000_000.0
    monotonic.now += 12.5
    assert clock() == 1_800_000_012.5
    # A new clock (a restarted host) takes up the wall clock again.
    assert SteadyClock(wall, monotonic)() == wall.now


@pytest.fixture
def kafka() -> Iterator[KafkaSettings]:
    with private_kafka(PARTITIONS) as settings:
        yield settings


def waiting_host(kafka: KafkaSettings, clock: Dial | SteadyClock) -> SagaHost:
    """A host with one saga waiting on its first reply (10 s timeout)."""
    saga_host = own(
        SagaHost(kafka, PARTITIONS, HostSettings(), clock=clock, start_timers=False),
        range(PARTITIONS),
    )
    assert saga_host.handle([start("s-1")]).applied == 1
    return saga_host


@pytest.mark.broker
@pytest.mark.parametrize("jump", [HOUR, -HOUR])
def test_a_wall_clock_jump_fires_no_timer_early_or_late(
    kafka: KafkaSettings, jump: float
) -> None:
    wall, monotonic = Dial(1_800_000_000.0), Dial(50.0)
    saga_host = waiting_host(kafka, SteadyClock(wall, monotonic))
    try:
        wall.now += jump
        assert saga_host.fire_timers() == 0  # a forward jump fires nothing
        monotonic.now += 5
        assert saga_host.fire_timers() == 0  # 5 s of 10: still in time
        monotonic.now += 6
        assert saga_host.fire_timers() == 1  # a backward jump delays nothing
        state = saga_host.state("s-1")
        assert state is not None and state.retrying  # timed out: a retry is due
    finally:
        saga_host.close()


@pytest.mark.broker
def test_on_the_bare_wall_clock_the_same_jump_would_fire_at_once(
    kafka: KafkaSettings,
) -> None:
    """The fault is real: a host reading the wall clock directly sends the
    next attempt the moment the clock jumps, 10 s early."""
    wall = Dial(1_800_000_000.0)
    saga_host = waiting_host(kafka, wall)
    try:
        wall.now += HOUR
        assert saga_host.fire_timers() == 1
    finally:
        saga_host.close()
