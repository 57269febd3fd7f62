"""The end of ``saga run``: waiting until every consumer group and the
projection have read everything, then what the log and the services' files
say about the run (dead letters, the money)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import ray
from ray.exceptions import RayError

from actors.app.groups import consumer_groups
from actors.app.run.workload import Workload
from actors.errors import SagaError
from actors.participants.audit import audit
from actors.runtime.ray import wait_until
from actors.topology import PROJECTION_GROUP
from events.transport.admin import TopicAdmin
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS


def platform_groups(kafka: KafkaSettings) -> dict[str, list[str]]:
    """Each consumer group that acts on sagas and the topics it reads (not
    the projection's: it is waited for by its own positions, see
    :func:`catch_up`)."""
    groups = consumer_groups(kafka.consumer.group_id)
    del groups[PROJECTION_GROUP]
    return groups


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
        try:
            positions = ray.get(
                [projection.position.remote(tp.topic, tp.partition) for tp in ends],
                timeout=10,
            )
        except RayError:
            return False  # restarting: it resumes from its committed offsets
        return all(
            pos >= end for pos, end in zip(positions, ends.values(), strict=True)
        )

    try:
        wait_until(caught_up, timeout_s, "the projection to catch up")
    except SagaError as exc:
        say(f"warning: {exc}; its tables lag the log")


def dead_letters(kafka: KafkaSettings, starts: Mapping[TP, int]) -> int:
    """The letters written to ``saga.dlq`` since ``starts`` (from :func:`log_ends`)."""
    with PartitionReader(kafka) as reader:
        dlq_starts = {tp: o for tp, o in starts.items() if tp.topic == SAGA_DLQ}
        return sum(1 for _ in reader.read(dlq_starts))


def audit_projection(data_dir: Path, outcomes: Mapping[str, str]) -> dict[str, int]:
    """The projection's tables against the log (``outcomes`` is the fold of
    the run's sagas from ``saga.events``): each saga's status as the log has
    it, and each logged event once. Read after the writer closed its file."""
    with duckdb.connect(str(data_dir / "projections.duckdb"), read_only=True) as db:
        statuses = dict(db.execute("SELECT saga_id, status FROM sagas").fetchall())
        twice = db.execute(
            "SELECT count(*) FROM (SELECT saga_id, seq FROM saga_events "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    return {
        "projection_mismatches": sum(
            1 for saga, outcome in outcomes.items() if statuses.get(saga) != outcome
        ),
        "projection_duplicates": int(twice[0]) if twice else 0,
    }


def audit_money(
    data_dir: Path, outcomes: dict[str, str], ids: set[str], load: Workload
) -> dict[str, int]:
    """The services' audit of this run's sagas, from the workload's openings."""
    wallets = {user: balance for user, (balance, _) in load.wallets.items()}
    return audit(data_dir, outcomes, ids, wallets, load.accounts)
