"""``saga run``: the whole platform end to end, with a workload and an audit.

Starts (or joins) Kafka and Ray, the saga engine and the participant services,
seeds users, wallets and accounts, runs N deposit sagas with a realistic mix
(most complete; blocked or unknown users and over-limit payments are rejected;
closed accounts are compensated; injected transient faults force retries), and
ends with a summary and an audit read from the participants' own DuckDB files.
With ``chaos``, a SagaHost and a participant are SIGKILLed at random moments;
Ray restarts them, and the audit must still be clean.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import ray

from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.app.metrics import PlatformCollector, serve_metrics
from actors.core import DEFINITIONS, OUTCOMES, HistoryCodec
from actors.engine.router import listened_topics
from actors.errors import SagaError, StartError
from actors.participants import (
    PARTICIPANTS,
    AccountService,
    PaymentService,
    UserService,
    consumer_groups,
)
from actors.participants.audit import audit
from actors.runtime import (
    Engine,
    ensure_ray,
    participants_ready,
    start_participants,
    start_projection,
    wait_until,
)
from events.errors import MessageDecodeError
from events.transport.admin import TopicAdmin
from events.transport.broker import EmbeddedBroker
from events.transport.reader import PartitionReader, PartitionTail
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import ALL_TOPICS, SAGA_DLQ, SAGA_EVENTS, command_topic


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


class Summary(msgspec.Struct):
    sagas: int
    completed: int
    compensated: int
    rejected: int
    failed: int
    sagas_per_s: float
    p50_ms: float
    p99_ms: float
    dlq: int
    audit: dict[str, int]
    seed: int
    elapsed_s: float
    chaos: list[str]
    data_dir: str | None
    #: How far the projection's tables trailed the log while the run went on
    #: (sampled every quarter second), in seconds.
    projection_lag_s: dict[str, float] = {}


class Workload(msgspec.Struct, frozen=True):
    users: dict[str, str]
    wallets: dict[str, tuple[int, int]]
    accounts: dict[str, str]
    requests: list[tuple[str, dict[str, Any], str]]


LIMIT = 5_000


def workload(count: int, seed: int, run_id: str) -> Workload:
    """Seeded data and requests: ~90% complete, ~7% rejected, ~3% compensated."""
    rng = random.Random(seed)
    pool = max(50, count // 10)
    users = {
        f"user-{i}": "blocked" if rng.random() < 0.03 else "verified"
        for i in range(pool)
    }
    wallets = {user: (10**12, LIMIT) for user in users}
    accounts = {
        f"acct-{i}": "closed" if rng.random() < 0.03 else "open" for i in range(pool)
    }
    requests = []
    for i in range(count):
        roll = rng.random()
        user = f"ghost-{i}" if roll < 0.02 else f"user-{rng.randrange(pool)}"
        amount = (
            rng.randint(LIMIT + 1, 2 * LIMIT)
            if 0.02 <= roll < 0.04
            else rng.randint(1, 2_000)
        )
        saga_input = {
            "userId": user,
            "accountId": f"acct-{rng.randrange(pool)}",
            "amount": amount,
            "currency": "USD",
        }
        requests.append(("deposit", saga_input, f"{run_id}-{i:07d}"))
    return Workload(users, wallets, accounts, requests)


class Follower:
    """Tails saga.events from given offsets; counts this run's outcomes."""

    def __init__(self, kafka: KafkaSettings, starts: dict[TP, int], ids: set[str]):
        self._ids = ids
        self._codec = HistoryCodec()
        self.started: dict[str, int] = {}
        self.newest_at = 0
        self.first_at = 0
        self.ended: dict[str, tuple[str, int]] = {}
        #: Records that are not saga log records: counted and passed over.
        self.unreadable = 0
        self._tail = PartitionTail(kafka, starts)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for raw in self._tail.poll(timeout_ms=200):
                try:
                    record = self._codec.decode(raw.value)
                except MessageDecodeError:
                    self.unreadable += 1
                    continue
                self.newest_at = max(self.newest_at, record.at)
                self.first_at = self.first_at or record.at
                if record.saga_id not in self._ids:
                    continue
                with self._lock:
                    self.started.setdefault(record.saga_id, record.at)
                    last = record.events[-1]
                    outcome = OUTCOMES.get(type(last))
                    if outcome is not None:
                        self.ended[record.saga_id] = (outcome, record.at)

    def count(self) -> int:
        with self._lock:
            return len(self.ended)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._tail.close()


@contextmanager
def kafka_for(
    config: SagaConfig, say: Callable[[str], None]
) -> Iterator[KafkaSettings]:
    """The configured Kafka, or an embedded broker for the run."""
    kafka = config.kafka
    with ExitStack() as stack:
        if not kafka.bootstrap_servers:
            broker = stack.enter_context(EmbeddedBroker())
            kafka = kafka.with_bootstrap(broker.bootstrap)
            say(f"embedded broker at {broker.bootstrap}")
        with TopicAdmin(kafka) as admin:
            admin.ensure_topics(ALL_TOPICS)
        yield kafka


def seed_participants(data_dir: Path, load: Workload) -> None:
    users = UserService(data_dir / "user.duckdb")
    users.seed(load.users)
    users.close()
    payments = PaymentService(data_dir / "payment.duckdb")
    payments.seed(load.wallets)
    payments.close()
    accounts = AccountService(data_dir / "account.duckdb")
    accounts.seed(load.accounts)
    accounts.close()


def audit_money(
    data_dir: Path, outcomes: dict[str, str], ids: set[str], load: Workload
) -> dict[str, int]:
    """The services' audit of this run's sagas, from the workload's openings."""
    wallets = {user: balance for user, (balance, _) in load.wallets.items()}
    return audit(data_dir, outcomes, ids, wallets, load.accounts)


def drain(
    kafka: KafkaSettings,
    groups: Mapping[str, Sequence[str]],
    timeout_s: float,
    say: Callable[[str], None],
) -> int:
    """Wait until each group has consumed its topics to their ends (commands a
    service has not handled yet may still take effect, so an audit before
    that proves nothing). Returns the records still unconsumed at the end."""
    partitions = kafka.topics.partitions
    wanted = {
        group: [TP(t, p) for t in topics for p in range(partitions)]
        for group, topics in groups.items()
    }
    behind = -1
    last_change = time.monotonic()
    with TopicAdmin(kafka) as admin, PartitionReader(kafka) as reader:
        while True:
            ends = reader.ends([tp for tps in wanted.values() for tp in tps])
            now_behind = 0
            for group, tps in wanted.items():
                # The ends were read once above, for every group's partitions.
                committed = admin.committed(group)
                now_behind += sum(max(0, ends[tp] - committed.get(tp, 0)) for tp in tps)
            if now_behind == 0:
                return 0
            if now_behind != behind:
                behind, last_change = now_behind, time.monotonic()
            elif time.monotonic() - last_change > timeout_s:
                say(
                    f"warning: {behind:,} records still unconsumed after "
                    f"{timeout_s:g} s without progress; auditing anyway"
                )
                return behind
            time.sleep(0.25)


def log_ends(kafka: KafkaSettings) -> dict[TP, int]:
    """The end offset of every partition of ``saga.events`` and ``saga.dlq``."""
    partitions = kafka.topics.partitions
    with PartitionReader(kafka) as reader:
        return reader.ends(
            [
                TP(topic, p)
                for topic in (SAGA_EVENTS, SAGA_DLQ)
                for p in range(partitions)
            ]
        )


def catch_up(
    kafka: KafkaSettings, projection: Any, timeout_s: float, say: Callable[[str], None]
) -> None:
    """Wait until the projection has read the log and the DLQ to their ends."""
    ends = log_ends(kafka)

    def caught_up() -> bool:
        positions = ray.get(
            [projection.position.remote(tp.topic, tp.partition) for tp in ends]
        )
        return all(
            pos >= end for pos, end in zip(positions, ends.values(), strict=True)
        )

    try:
        wait_until(caught_up, timeout_s, "the projection to catch up")
    except SagaError as exc:
        say(f"warning: {exc}; its tables lag the log")


def platform_groups(kafka: KafkaSettings) -> dict[str, list[str]]:
    """Each consumer group that acts on sagas and the topics it reads."""
    groups = {
        f"{name}-service": [command_topic(cls.service, a) for a in cls.actions]
        for name, cls in PARTICIPANTS.items()
    }
    groups[kafka.consumer.group_id] = listened_topics(DEFINITIONS)
    return groups


def start_all(
    client: SagaClient,
    requests: list[tuple[str, dict[str, Any], str]],
    say: Callable[[str], None],
    attempts: int = 5,
) -> None:
    """Start the requests, sending again those the broker did not acknowledge
    (same sagaIds: one that did land after all is a duplicate)."""
    pending: list[tuple[str, Mapping[str, Any], str | None]] = list(requests)
    for attempt in range(1, attempts + 1):
        try:
            client.start_many(pending)
            return
        except StartError as exc:
            if attempt == attempts:
                raise
            say(f"warning: {exc}; sending them again")
            pending = [r for r in pending if r[2] in exc.failed]
            time.sleep(min(2.0**attempt, 10.0))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


class Chaos:
    """Kills a SagaHost and a participant, once each, at random moments while
    the requests go out (so sagas are surely in flight)."""

    def __init__(
        self,
        rng: random.Random,
        hosts: list[Any],
        participants: dict[str, Any],
        say: Callable[[str], None],
    ) -> None:
        self.log: list[str] = []
        self._say = say
        name = rng.choice(sorted(participants))
        self._plan = [
            (rng.uniform(0.2, 0.6), "saga host", rng.choice(hosts)),
            (rng.uniform(0.3, 0.8), f"{name} service", participants[name]),
        ]

    def tick(self, submitted: float) -> None:
        for item in [p for p in self._plan if p[0] <= submitted]:
            self._plan.remove(item)
            _, name, actor = item
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            note = f"killed the {name} (pid {pid}) with {submitted:.0%} of sagas sent"
            self.log.append(note)
            self._say(note)


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
        kafka = stack.enter_context(kafka_for(config, say))
        starts = log_ends(kafka)
        ensure_ray(config.ray, quiet=options.quiet)
        engine = Engine(kafka, config.engine)
        participants = start_participants(kafka, data_dir, faults=options.faults)
        projection = start_projection(kafka, data_dir)
        if options.metrics_port is not None:
            serve_metrics(
                options.metrics_port,
                PlatformCollector(
                    kafka,
                    engine.hosts,
                    engine.routers,
                    participants,
                    projection,
                    consumer_groups(config.kafka.consumer.group_id),
                ),
            )
            say(f"metrics at http://localhost:{options.metrics_port}/metrics")
        say("waiting for the consumer groups to form")
        engine.wait_ready()
        participants_ready(participants)
        say(
            f"engine: {len(engine.hosts)} hosts, {len(engine.routers)} routers; "
            f"participants: {', '.join(participants)}; data in {data_dir}"
        )
        follower = Follower(
            kafka, {tp: o for tp, o in starts.items() if tp.topic == SAGA_EVENTS}, ids
        )
        chaos = (
            Chaos(random.Random(options.seed), engine.hosts, participants, say)
            if options.chaos
            else None
        )
        began = time.monotonic()
        try:
            chunk = max(100, min(len(ids) // 20, options.max_in_flight // 4))
            with SagaClient(kafka) as client:
                for i in range(0, len(load.requests), chunk):
                    # A window, as real clients have: an unbounded burst only
                    # queues, and queued commands time out (DESIGN.md's ceiling
                    # has no timeouts to meet).
                    while i - follower.count() > options.max_in_flight:
                        progress(follower.count(), len(ids), time.monotonic() - began)
                        time.sleep(0.05)
                    start_all(client, load.requests[i : i + chunk], say)
                    if chaos is not None:
                        chaos.tick(min(i + chunk, len(ids)) / len(ids))
                    progress(follower.count(), len(ids), time.monotonic() - began)
            last_change, last_count = time.monotonic(), -1
            lags: list[float] = []
            while (done := follower.count()) < len(ids):
                # Before its first batch the projection reaches back to the
                # run's first record.
                reached = ray.get(projection.newest_at.remote()) or follower.first_at
                lags.append(max(0, follower.newest_at - reached) / 1000)
                if done != last_count:
                    last_change, last_count = time.monotonic(), done
                elif time.monotonic() - last_change > options.stall_timeout_s:
                    say(
                        f"no saga ended for {options.stall_timeout_s:g} s; "
                        "giving up on the rest"
                    )
                    break
                progress(done, len(ids), time.monotonic() - began)
                time.sleep(0.25)
            elapsed = time.monotonic() - began
            progress(follower.count(), len(ids), elapsed)
            # Commands still queued (attempts answered already, or a service
            # that was slow) may yet take effect, and their replies be late:
            # the audit waits until every service and router has read it all.
            say("waiting for the services and routers to consume everything")
            undrained = drain(
                kafka, platform_groups(kafka), options.stall_timeout_s, say
            )
        finally:
            follower.close()
            if follower.unreadable:
                say(
                    f"warning: {follower.unreadable} records on {SAGA_EVENTS} are "
                    "not saga log records; passed over"
                )
            catch_up(kafka, projection, options.stall_timeout_s, say)
            ray.get(projection.stop.remote(), timeout=60)
            ray.kill(projection, no_restart=True)
            engine.stop()
            ray.get([p.stop.remote() for p in participants.values()], timeout=60)
            for actor in participants.values():
                ray.kill(actor, no_restart=True)
        outcomes = {s: o for s, (o, _) in follower.ended.items()}
        latencies = [
            at - follower.started[s]
            for s, (_, at) in follower.ended.items()
            if s in follower.started
        ]
        with PartitionReader(kafka) as reader:
            dlq_starts = {tp: o for tp, o in starts.items() if tp.topic == SAGA_DLQ}
            dead = sum(1 for _ in reader.read(dlq_starts))
        counts = {name: 0 for name in OUTCOMES.values()}
        for outcome in outcomes.values():
            counts[outcome] += 1
        return Summary(
            sagas=len(ids),
            completed=counts["completed"],
            compensated=counts["compensated"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            sagas_per_s=round(len(outcomes) / elapsed, 1) if elapsed else 0.0,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            dlq=dead,
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


def progress_bar(stream: Any = sys.stderr) -> Callable[[int, int, float], None]:
    last = [0.0]

    def show(done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / elapsed if elapsed > 0 else 0.0
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
            f"sagas ended  {rate:,.0f}/s  {elapsed:,.0f} s"
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
