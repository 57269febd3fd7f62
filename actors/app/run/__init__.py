"""``saga run``: the whole platform end to end, with a workload and an audit.

Starts (or joins) Kafka and Ray, the saga engine and the participant services,
seeds users, wallets and accounts, runs N deposit sagas with a realistic mix
(most complete; blocked or unknown users and over-limit payments are rejected;
closed accounts are compensated; injected transient faults force retries), and
ends with a summary and an audit read from the participants' own DuckDB files.
With ``chaos``, a SagaHost and a participant are SIGKILLed at random moments;
Ray restarts them, and the audit must still be clean.

- :mod:`~actors.app.run.workload`: the seeded data and requests, and sending
  them;
- :mod:`~actors.app.run.chaos`: the kills of ``--chaos``;
- :mod:`~actors.app.run.follower`: the run's sagas followed on ``saga.events``;
- :mod:`~actors.app.run.audit`: waiting until everything is consumed, then the
  dead letters and the money;
- :mod:`~actors.app.run.summary`: the summary and the progress bar.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from actors.app.config import SagaConfig
from actors.app.platform import Platform, kafka_for, running_platform
from actors.app.run.audit import (
    audit_money,
    catch_up,
    dead_letters,
    drain,
    log_ends,
    platform_groups,
)
from actors.app.run.chaos import Chaos
from actors.app.run.follower import Follower, await_ends
from actors.app.run.summary import Summary, percentile, progress_bar
from actors.app.run.workload import (
    Workload,
    seed_participants,
    send,
    start_all,
    workload,
)
from actors.runtime.participants import participants_ready
from events.wire.topics import SAGA_EVENTS

__all__ = [
    "Chaos",
    "Follower",
    "RunOptions",
    "Summary",
    "Workload",
    "audit_money",
    "catch_up",
    "drain",
    "log_ends",
    "percentile",
    "platform_groups",
    "progress_bar",
    "run",
    "seed_participants",
    "start_all",
    "workload",
]


class RunOptions(msgspec.Struct, frozen=True):
    sagas: int = 1_000
    chaos: bool = False
    seed: int = 0
    #: Share of participant batches that fail once with an injected fault.
    faults: float = 0.02
    #: Give up on sagas that made no progress for this long.
    stall_timeout_s: float = 120.0
    #: Where the DuckDB files go; ``None``: a temporary directory, removed after.
    data_dir: str | None = None
    #: Keep Ray's and the actors' logs off stdout (for ``--json``).
    quiet: bool = False
    #: Sagas sent but not yet ended, at most.
    max_in_flight: int = 5_000
    #: Serve Prometheus metrics on this port while the run lasts.
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"


def run(
    config: SagaConfig,
    options: RunOptions,
    say: Callable[[str], None],
    progress: Callable[[int, int, float], None],
) -> Summary:
    # Unique per run: runs against one Kafka must never share a sagaId.
    run_id = datetime.now(UTC).strftime("run%Y%m%d%H%M%S") + uuid.uuid4().hex[:6]
    load = workload(options.sagas, options.seed, run_id)
    ids = {saga_id for _, _, saga_id in load.requests}
    with ExitStack() as stack:
        if options.data_dir is None:
            data_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="saga-run-"))
            )
        else:
            data_dir = Path(options.data_dir) / run_id
        data_dir.mkdir(parents=True, exist_ok=True)
        seed_participants(data_dir, load)
        kafka = stack.enter_context(
            kafka_for(
                config,
                lambda bootstrap: say(f"embedded broker at {bootstrap}"),
                create_topics=True,
            )
        )
        starts = log_ends(kafka)
        with running_platform(
            config,
            kafka,
            data_dir,
            services=True,
            say=say,
            faults=options.faults,
            metrics_port=options.metrics_port,
            metrics_addr=options.metrics_addr,
            quiet=options.quiet,
        ) as platform:
            _wait_ready(platform, data_dir, say)
            follower = Follower(
                kafka,
                {tp: o for tp, o in starts.items() if tp.topic == SAGA_EVENTS},
                ids,
            )
            chaos = (
                Chaos(
                    random.Random(options.seed),
                    platform.engine.hosts,
                    platform.participants,
                    say,
                )
                if options.chaos
                else None
            )
            try:
                elapsed, lags, undrained = _drive(
                    platform, load, follower, chaos, options, say, progress
                )
            finally:
                follower.close()
                if follower.unreadable:
                    say(
                        f"warning: {follower.unreadable} records on {SAGA_EVENTS} "
                        "are not saga log records; passed over"
                    )
                catch_up(kafka, platform.projection, options.stall_timeout_s, say)
        outcomes = follower.outcomes()
        latencies = follower.latencies()
        counts = Counter(outcomes.values())
        return Summary(
            sagas=len(ids),
            completed=counts["completed"],
            compensated=counts["compensated"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            sagas_per_s=round(len(outcomes) / elapsed, 1) if elapsed else 0.0,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            dlq=dead_letters(kafka, starts),
            audit={
                **audit_money(data_dir, outcomes, ids, load),
                "undrained": undrained,
            },
            seed=options.seed,
            elapsed_s=round(elapsed, 2),
            chaos=[] if chaos is None else chaos.log,
            data_dir=None if options.data_dir is None else str(data_dir),
            projection_lag_s={
                "p50": percentile(lags, 0.50),
                "max": max(lags, default=0.0),
            },
        )


def _wait_ready(platform: Platform, data_dir: Path, say: Callable[[str], None]) -> None:
    """Until the routers and the services hold their partitions."""
    say("waiting for the consumer groups to form")
    platform.engine.wait_ready()
    participants_ready(platform.participants)
    say(
        f"engine: {len(platform.engine.hosts)} hosts, "
        f"{len(platform.engine.routers)} routers; "
        f"participants: {', '.join(platform.participants)}; data in {data_dir}"
    )


def _drive(
    platform: Platform,
    load: Workload,
    follower: Follower,
    chaos: Chaos | None,
    options: RunOptions,
    say: Callable[[str], None],
    progress: Callable[[int, int, float], None],
) -> tuple[float, list[float], int]:
    """Send the requests, wait for the sagas to end, then for every group to
    consume everything. Returns the seconds until the sagas ended, the
    projection's lag meanwhile (seconds, sampled) and the records still
    unconsumed."""
    total = len(load.requests)
    began = time.monotonic()

    def report() -> None:
        progress(follower.count(), total, time.monotonic() - began)

    kafka = platform.kafka
    send(
        kafka, load.requests, follower.count, options.max_in_flight, chaos, report, say
    )
    lags = await_ends(
        follower, platform.projection, total, options.stall_timeout_s, report, say
    )
    elapsed = time.monotonic() - began
    progress(follower.count(), total, elapsed)
    # Commands still queued (attempts answered already, or a service that was
    # slow) may yet take effect, and their replies be late: the audit waits
    # until every service and router has read it all.
    say("waiting for the services and routers to consume everything")
    undrained = drain(kafka, platform_groups(kafka), options.stall_timeout_s, say)
    return elapsed, lags, undrained
