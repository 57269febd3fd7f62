"""``saga run`` while the wall clock of every Ray process jumps: an hour
forward, then back past the true time to an hour behind (a participant service
frozen meanwhile, so timers must fire), then to the true time again.

Run as a process of its own (``python -m tests.actors.runtime.clock_jump_run``
with ``WALLSTEP_LIBRARY`` naming the built ``wallstep.c``), since its Ray must
start with the library preloaded: this driver sets ``LD_PRELOAD`` once its
broker started and before Ray starts, so Ray's processes (the saga hosts,
routers, services and projection among them) inherit it, and neither the
broker nor the driver does; the driver's clock is the true one, which the
report's times are read on. The broker is a private one (it outlives the run,
so the log is read after it).

Prints one JSON report: the run's summary (its audit: money, each effect once,
every saga ended, lag 0, projection = log), each step of the clock, and what
the log says of them: each record's Kafka timestamp (stamped by the writing
host's producer, on its wall clock) against its decision time (the host's
clock port), and every timer's lateness against its deadline.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from bisect import bisect_right
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from actors.app.chaos import Fault
from actors.app.config import SagaConfig
from actors.app.run import RunOptions, chaos_schedule, run
from actors.core import (
    CompensationCommanded,
    CompensationTimedOut,
    Fence,
    StepCommanded,
    StepTimedOut,
)
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.actors.runtime.scenarios import main
from tests.actors.runtime.wallstep import WallStep
from tests.conftest import private_kafka

PARTITIONS = 4
HOUR = 3600.0
#: A record stamped within this of its window's offset saw that step.
_SEEN_MS = 60_000
#: How far a host's clock port and this driver's clock may be apart.
_NEAR_MS = 1_000


class Stepper:
    """``saga run``'s progress callback: steps the wall clock to each offset
    of ``plan`` once its share of the sagas has ended."""

    def __init__(self, wall: WallStep, plan: list[tuple[float, float]]) -> None:
        self._wall = wall
        self._plan = list(plan)
        self.steps: list[dict[str, Any]] = []

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        # One step a call at most: each window gets records of its own.
        if self._plan and done >= total * self._plan[0][0]:
            share, seconds = self._plan.pop(0)
            self._wall.step_to(seconds)
            self.steps.append(
                {"share": share, "to_s": seconds, "ended": done, "at": _now_ms()}
            )


def _now_ms() -> int:
    return int(time.time() * 1000)  # this driver's clock is not stepped


def run_with_jumps(seed: int, sagas: int) -> dict[str, Any]:
    library = os.environ["WALLSTEP_LIBRARY"]
    with tempfile.TemporaryDirectory(prefix="saga-clock-jump-") as data_dir:
        wall = WallStep(Path(data_dir) / "wallstep")
        try:
            with private_kafka(PARTITIONS) as kafka:
                # For the processes started from here on: Ray's, not the
                # broker's (the clock steps on the platform's machines).
                os.environ["WALLSTEP_FILE"] = str(wall.path)
                preloaded = os.environ.get("LD_PRELOAD", "").split()
                os.environ["LD_PRELOAD"] = " ".join([library, *preloaded])
                return _run(kafka, wall, data_dir, seed, sagas)
        finally:
            wall.close()


def _run(
    kafka: KafkaSettings, wall: WallStep, data_dir: str, seed: int, sagas: int
) -> dict[str, Any]:
    config = SagaConfig(kafka=kafka, data_dir=data_dir)
    options, freeze = _late_freeze(config, seed, sagas, data_dir)
    # Forward while sagas wait on replies (a timer on the wall clock would
    # fire at once), back before the freeze (one would not fire for an hour),
    # and true again once the frozen service is answering.
    plan = [(0.25 * freeze.at, HOUR), (0.75 * freeze.at, -HOUR)]
    stepper = Stepper(wall, [*plan, (freeze.at + 0.2, 0.0)])
    said = [f"seed {seed}: the run's seed is {options.seed}"]
    began = _now_ms()
    summary = run(config, options, said.append, stepper)
    ended = _now_ms()
    return {
        "summary": msgspec.to_builtins(summary),
        "freeze": msgspec.to_builtins(freeze),
        "steps": stepper.steps,
        "log": read_log(kafka, stepper.steps, began, ended),
        "said": said[-20:],
    }


def _late_freeze(
    config: SagaConfig, seed: int, sagas: int, data_dir: str
) -> tuple[RunOptions, Fault]:
    """The run's options, from the first seed from ``seed`` on whose freeze
    strikes once a fifth of the sagas ended, so each window of the clock
    before it holds sagas: true for a quarter of the way to the freeze, an
    hour ahead for half of it (the same ``seed`` picks the same)."""
    runs = (
        RunOptions(
            sagas=sagas,
            seed=candidate,
            data_dir=data_dir,
            chaos=True,
            chaos_faults="service-freeze",
            faults=0.0,  # no injected failures: every timeout is the freeze's
        )
        for candidate in itertools.count(seed)
    )
    return next(
        (options, freeze)
        for options in runs
        for freeze in chaos_schedule(config, options)
        if freeze.at >= 0.2
    )


def read_log(
    kafka: KafkaSettings, steps: list[dict[str, Any]], began: int, ended: int
) -> dict[str, Any]:
    """What the log says of the steps: per clock window (before the first
    step, then after each), its records and how many were stamped on a wall
    clock that far off their decision time; the records whose stamp no step
    explains; the decisions dated outside the run's true span; and each
    timer's lateness (when it acted, on the port, less when it was due), by
    the window it acted in.

    A record is stamped when its host sends it, after deciding it: one decided
    before a step may be stamped after it, on any later window's clock. And a
    host's port and this driver's clock may differ by a little: near a step,
    the window before it explains a stamp too."""
    fence = Fence()
    offsets = [0] + [round(s["to_s"] * 1000) for s in steps]
    bounds = [s["at"] for s in steps]
    records, stamped = Counter[int](), Counter[int]()
    unexplained = outside = 0
    timers = Timers()
    starts = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    for raw in read_to_end(kafka, starts):
        record = fence.read(raw.partition, raw.value)
        if record is None:
            continue  # a claim
        window = bisect_right(bounds, record.at)
        near = any(abs(record.at - bound) < _NEAR_MS for bound in bounds)
        explaining = offsets[max(0, window - near) :]
        skew = raw.timestamp - record.at
        records[window] += 1
        stamped[window] += abs(skew - offsets[window]) < _SEEN_MS
        unexplained += all(abs(skew - offset) >= _SEEN_MS for offset in explaining)
        outside += not began - _NEAR_MS <= record.at <= ended + _NEAR_MS
        for event in record.events:
            timers.apply(record.saga_id, record.at, window, event)
    return {
        "windows": [
            {"to_s": offset / 1000, "records": records[i], "stamped": stamped[i]}
            for i, offset in enumerate(offsets)
        ],
        "unexplained_stamps": unexplained,
        "decided_outside_run": outside,
        "timers": timers.report(),
    }


class Timers:
    """Every timer of the log and when it acted: an attempt's deadline, met by
    its timeout; a retry's time, met by the next attempt's command. Each is
    keyed by saga, whether it is a compensation's, step and attempt."""

    def __init__(self) -> None:
        self._deadlines: dict[tuple[str, bool, str, int], int] = {}
        self._retries: dict[tuple[str, bool, str, int], int] = {}
        self._late: list[tuple[int, int]] = []

    def apply(self, saga_id: str, at: int, window: int, event: object) -> None:
        match event:
            case StepCommanded() | CompensationCommanded():
                compensating = isinstance(event, CompensationCommanded)
                step_key = (saga_id, compensating, event.step)
                retry = self._retries.pop((*step_key, event.attempt - 1), None)
                if retry is not None:
                    self._late.append((window, at - retry))
                self._deadlines[(*step_key, event.attempt)] = event.deadline
            case StepTimedOut() | CompensationTimedOut():
                compensating = isinstance(event, CompensationTimedOut)
                attempt_key = (saga_id, compensating, event.step, event.attempt)
                self._late.append((window, at - self._deadlines.pop(attempt_key)))
                if event.retry_at is not None:
                    self._retries[attempt_key] = event.retry_at

    def report(self) -> dict[str, Any]:
        late = [ms for _, ms in self._late]
        return {
            "acted": len(late),
            "by_window": dict(Counter(w for w, _ in self._late)),
            "late_ms_min": min(late, default=None),
            "late_ms_max": max(late, default=None),
        }


if __name__ == "__main__":
    main(run_with_jumps, __doc__, sagas=2_000)
