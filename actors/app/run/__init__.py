"""``saga run``: the whole platform end to end, with a workload and an audit.

Starts (or joins) Kafka and Ray, the saga engine and the participant services,
seeds users, wallets and accounts, runs N deposit sagas with a realistic mix
(most complete; blocked or unknown users and over-limit payments are rejected;
closed accounts are compensated; injected transient faults force retries), and
ends with a summary and an audit read from the participants' own DuckDB files.
With ``chaos``, a seeded schedule of faults strikes while the sagas run (kills,
a paused broker, a frozen service, duplicates, poison); each must be proved to
have fired, and the audit must still be clean.

- :mod:`~actors.app.run.workload`: the seeded data and requests, and sending
  them;
- :mod:`~actors.app.chaos`: the fault schedule of ``--chaos``;
- :mod:`~actors.app.run.strikes`: striking each fault, and proving it fired;
- :mod:`~actors.app.run.follower`: the run's sagas followed on ``saga.events``;
- :mod:`~actors.app.run.audit`: waiting until everything is consumed, then the
  dead letters and the money;
- :mod:`~actors.app.run.summary`: the summary;
- :mod:`~actors.app.run.progress`: the status lines and the count while it runs.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from actors.app.chaos import Fault, chosen_faults, schedule, step_budgets
from actors.app.config import SagaConfig
from actors.app.platform import Platform, kafka_for, running_platform
from actors.app.run.audit import (
    audit_money,
    audit_projection,
    catch_up,
    dead_letters,
    drain,
    log_ends,
    platform_groups,
)
from actors.app.run.follower import Follower, LagSampler, await_ends
from actors.app.run.progress import Progress
from actors.app.run.proof import Proof
from actors.app.run.stall import explain_stall
from actors.app.run.strikes import Chaos
from actors.app.run.summary import Summary, percentile
from actors.app.run.workload import (
    Workload,
    seed_participants,
    send,
    start_all,
    window,
    workload,
)
from actors.core import DEFINITIONS
from actors.errors import UsageError
from actors.participants import PARTICIPANTS
from events.transport.broker import EmbeddedBroker
from events.wire.topics import SAGA_EVENTS

__all__ = [
    "Chaos",
    "Fault",
    "Follower",
    "Progress",
    "RunOptions",
    "Summary",
    "Workload",
    "audit_money",
    "catch_up",
    "drain",
    "log_ends",
    "percentile",
    "platform_groups",
    "run",
    "seed_participants",
    "start_all",
    "workload",
]


class RunOptions(msgspec.Struct, frozen=True):
    sagas: int = 1_000
    chaos: bool = False
    #: Comma-separated fault kinds for ``chaos`` (``None``: every kind that can run).
    chaos_faults: str | None = None
    seed: int = 0
    #: Share of participant batches that fail once with an injected fault.
    faults: float = 0.02
    #: Give up on sagas that made no progress for this long.
    stall_timeout_s: float = 120.0
    #: The data directory: the run's DuckDB files go into ``<data_dir>/<run id>``
    #: and stay there (the only copy of its log once its broker is gone).
    data_dir: str = "saga-data"
    #: Sagas sent but not yet ended, at most.
    max_in_flight: int = 5_000
    #: Serve Prometheus metrics on this port while the run lasts.
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    #: Keep the platform (and the endpoint) up this long after the run.
    metrics_linger_s: float = 0.0


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
    faults = _announced_schedule(config, options, say) if options.chaos else []
    brokers: list[EmbeddedBroker] = []

    def announce(broker: EmbeddedBroker) -> None:
        brokers.append(broker)
        say(f"embedded broker at {broker.bootstrap}")

    with ExitStack() as stack:
        data_dir = Path(options.data_dir).expanduser().absolute() / run_id
        data_dir.mkdir(parents=True, exist_ok=True)
        say(f"data in {data_dir} (kept after the run)")
        seed_participants(data_dir, load)
        kafka = stack.enter_context(kafka_for(config, announce, create_topics=True))
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
        ) as platform:
            _wait_ready(platform, say)
            follower = Follower(
                kafka,
                {tp: o for tp, o in starts.items() if tp.topic == SAGA_EVENTS},
                ids,
            )
            chaos = (
                Chaos(faults, platform, brokers, load, starts, data_dir, say)
                if options.chaos
                else None
            )
            try:
                elapsed, lags, undrained = _drive(
                    platform, load, follower, chaos, options, say, progress
                )
            finally:
                if chaos is not None:
                    chaos.close()  # nothing left stopped, whatever happened
                follower.close()
                if follower.unreadable:
                    say(
                        f"warning: {follower.unreadable} records on {SAGA_EVENTS} "
                        "are not saga log records or claims, or came above the "
                        "epoch in force (a claim lost); passed over"
                    )
                catch_up(kafka, platform.projection, options.stall_timeout_s, say)
            # While the actors still run: a kill is proved by its new pid.
            proofs = [] if chaos is None else chaos.proofs()
            if options.metrics_port is not None and options.metrics_linger_s > 0:
                _linger(options, say)
        for proof in proofs:
            say(f"chaos: {'fired' if proof.fired else 'NOT PROVED'}: {proof.note}")
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
                **audit_projection(data_dir, outcomes),
                "undrained": undrained,
                **_unproven(chaos, proofs),
            },
            seed=options.seed,
            elapsed_s=round(elapsed, 2),
            chaos=[] if chaos is None else chaos.log,
            chaos_proofs=[msgspec.to_builtins(p) for p in proofs],
            data_dir=str(data_dir),
            projection_lag_s={
                "p50": percentile(lags, 0.50),
                "max": max(lags, default=0.0),
            },
        )


def _linger(options: RunOptions, say: Callable[[str], None]) -> None:
    """Hold the platform up for a last scrape. The counters are final only
    now, the projection caught up with the log; a Prometheus scraping every
    15 s would miss them if the endpoint went with the run."""
    say(
        f"metrics: the run's final counts at http://{options.metrics_addr}:"
        f"{options.metrics_port}/metrics for {options.metrics_linger_s:g} s "
        "(Ctrl-C ends the wait)"
    )
    with suppress(KeyboardInterrupt):
        time.sleep(options.metrics_linger_s)


def _announced_schedule(
    config: SagaConfig, options: RunOptions, say: Callable[[str], None]
) -> list[Fault]:
    """The chaos schedule, printed before anything starts (to replay a seed)."""
    if config.ray.address is not None:
        raise UsageError(
            "--chaos signals the platform's processes on this machine: run it on "
            "a local Ray (without ray.address)"
        )
    faults = chaos_schedule(config, options)
    say(f"chaos schedule (seed {options.seed}; replay with --seed):")
    for fault in faults:
        say(f"  at {fault.at:4.0%} of sagas ended: {fault.describe()}")
    return faults


def _unproven(chaos: Chaos | None, proofs: list[Proof]) -> dict[str, int]:
    """A chaos run's faults that could not be proved to fire: violations."""
    return {} if chaos is None else {"chaos_unproven": sum(not p.fired for p in proofs)}


def chaos_schedule(config: SagaConfig, options: RunOptions) -> list[Fault]:
    """The run's faults: drawn from its seed and the platform's shape, before
    anything starts (a bad ``--chaos-faults`` costs nothing)."""
    kinds = chosen_faults(
        options.chaos_faults, embedded_broker=not config.kafka.bootstrap_servers
    )
    return schedule(
        options.seed,
        kinds,
        hosts=config.engine.hosts,
        routers=config.engine.routers,
        services=sorted(PARTICIPANTS),
        session_timeout_s=config.kafka.consumer.session_timeout_ms / 1000,
        step_budget_s=step_budgets(DEFINITIONS),
        host_timeout_s=config.engine.host_timeout_s,
    )


def _wait_ready(platform: Platform, say: Callable[[str], None]) -> None:
    platform.wait_ready(say)
    say(
        f"engine: {len(platform.engine.hosts)} hosts, "
        f"{len(platform.engine.routers)} routers; "
        f"participants: {', '.join(platform.participants)}"
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

    sampler = LagSampler(follower, platform.projection)

    def report() -> None:
        progress(follower.count(), total, time.monotonic() - began)
        sampler.sample()
        if chaos is not None:
            chaos.tick(follower.count() / total)

    kafka = platform.kafka
    in_flight = window(total, options.max_in_flight, chaos is not None)
    requests = load.requests
    if chaos is None:
        send(kafka, requests, follower.count, in_flight, report, say)
    else:
        # Its last window waits until every fault struck; the refund refusal
        # picks sagas not sent yet.
        send(kafka, requests, follower.count, in_flight, report, say,
             held=chaos.unstruck, sent=chaos.sent)  # fmt: skip
    await_ends(follower, total, options.stall_timeout_s, report, say)
    if follower.count() < total:
        unended = {saga_id for _, _, saga_id in load.requests} - set(follower.ended)
        explain_stall(platform.engine, unended, int(time.time() * 1000), say)
    if chaos is not None:
        chaos.finish()
    elapsed = time.monotonic() - began
    progress(follower.count(), total, elapsed)
    # Commands still queued (attempts answered already, or a service that was
    # slow) may yet take effect, and their replies be late: the audit waits
    # until every service and router has read it all.
    say("waiting for the services and routers to consume everything")
    undrained = drain(kafka, platform_groups(kafka), options.stall_timeout_s, say)
    return elapsed, sampler.lags, undrained
