"""The projection writer on Ray: a restartable actor that owns the DuckDB file."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import ray

from actors.engine.router import BROKER_ERRORS
from actors.engine.workers import (
    Fatal,
    connect_patiently,
    die_now,
    poll_until,
    start_vital,
)
from actors.runtime.passwords import read_passwords
from actors.runtime.placement import advertised, state_options
from actors.topology import PROJECTION_GROUP
from events.transport.listener import Delivery, KafkaEventListener
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_DLQ, SAGA_DLQ_ACTIONS, SAGA_EVENTS
from projections.counts import SagaCounts, StepLatency, saga_counts, step_latencies
from projections.freshness import BEAT_EVERY_S, beat
from projections.store import open_store
from projections.writer import Consumed, ProjectionWriter

log = logging.getLogger(__name__)


class ProjectionActor:
    """The projection writer in a Ray actor: a member of its own consumer group
    over ``saga.events`` and ``saga.dlq``, writing ``<path>`` in batches; an
    offset is committed to Kafka only after its batch is in DuckDB.

    A batch is what arrives within ``gather_ms`` of its first record: DuckDB's
    cost is mostly per transaction and per row a transaction replaces (a
    saga's row once per batch, however many of its events the batch holds),
    so a few large batches cost a fraction of many small ones, and readers
    see the tables only as published every ``publish_every_s`` anyway."""

    def __init__(
        self,
        kafka: KafkaSettings,
        path: str,
        publish_dir: str,
        publish_every_s: float = 2.0,
        gather_ms: int = 500,
    ) -> None:
        kafka = read_passwords(kafka)  # withheld from the arguments
        self._publish_dir = Path(publish_dir)
        self._publish_every = publish_every_s
        self._published = 0.0
        self._dirty = True
        #: Since when (epoch s) the tables have had what the published files
        #: lack: the heartbeat tells readers (a file just opened may be
        #: ahead of what was published before a kill).
        self._dirty_since: float | None = time.time()
        self._db = open_store(path)
        self._writer = ProjectionWriter(self._db)
        self._counts = dict.fromkeys(
            ("events", "dead_letters", "skipped", "unreadable", "fenced"), 0
        )
        self._listener: KafkaEventListener | None = None
        #: Armed (the file to mark the death in, maybe ""), or not (None).
        self._die_after_batch: str | None = None

        def join() -> KafkaEventListener:
            return KafkaEventListener(
                kafka,
                [SAGA_EVENTS, SAGA_DLQ, SAGA_DLQ_ACTIONS],
                self._handle,
                group_id=PROJECTION_GROUP,
                decode=False,
                start_at=self._positions,
                # DuckDB's positions, never the group's: a file that is new
                # on the node the writer moved to starts from the log's start.
                own_positions=True,
                gather_ms=gather_ms,
            )

        self._join = join
        self._stopping = threading.Event()
        self._fatal = Fatal()
        self._thread = start_vital("projection", self._run, self._fatal)
        # Its own thread: readers learn the writer lives even while a poll
        # waits on a slow broker.
        self._beating = threading.Thread(
            target=self._beat_until_stopped, name="projection-heartbeat", daemon=True
        )
        self._beating.start()

    def _positions(self, partitions: Iterable[TP]) -> dict[TP, int]:
        # The tables record what they consumed, in the same transaction: that
        # is where to go on, and a log that now ends below it is a loss, not
        # a fresh start.
        return {tp: self._writer.next_offset(*tp) for tp in partitions}

    def _handle(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        report = self._writer.apply(
            [Consumed(d.topic, d.partition, d.offset, d.value) for d in deliveries]
        )
        self._counts["events"] += report.events
        self._counts["dead_letters"] += report.dead_letters
        self._counts["skipped"] += report.skipped
        self._counts["unreadable"] += report.unreadable
        self._counts["fenced"] += report.fenced
        changed = report.events or report.dead_letters or report.owners
        if changed and not self._dirty:
            self._dirty_since = time.time()
            self._dirty = True
        if self._die_after_batch is not None:
            # `saga run --chaos`: the batch is in DuckDB, its offsets not
            # committed: the next incarnation gets it again and skips it.
            die_now(self._die_after_batch, "after writing a batch, before committing")
        return deliveries

    def die_after_next_batch(self, mark: str = "") -> None:
        """`saga run --chaos`: the next batch written ends this process before
        its offsets are committed (Ray restarts it), once it wrote so to the
        file ``mark`` if one is named."""
        self._die_after_batch = mark

    def _publish(self) -> None:
        self._writer.publish(self._publish_dir)
        self._published = time.monotonic()
        self._dirty = False
        self._dirty_since = None

    def _beat_until_stopped(self) -> None:
        while True:
            self._beat(stopped=False)
            if self._stopping.wait(BEAT_EVERY_S):
                return

    def _beat(self, stopped: bool) -> None:
        try:
            beat(
                self._publish_dir,
                unpublished_since=self._dirty_since,
                stopped=stopped,
            )
        except OSError as exc:
            # A full disk: readers see the heartbeat age and say so.
            log.warning("projection heartbeat not written: %s", exc)

    def _run(self) -> None:
        # A DuckDB I/O error (a full disk) may pass; the batch is redelivered.
        transient = (*BROKER_ERRORS, duckdb.IOException)
        listener = connect_patiently(self._stopping, self._join, "projection")
        if listener is None:
            return
        self._listener = listener
        poll_until(
            self._stopping, lambda: self._step(listener), transient, "projection batch"
        )

    def _step(self, listener: KafkaEventListener) -> None:
        listener.poll_once()
        due = time.monotonic() - self._published >= self._publish_every
        if self._dirty and due:
            self._publish()

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def fatal(self) -> str:
        """Why the projection stopped for good ("" while it runs)."""
        return self._fatal.reason

    def newest_at(self) -> int:
        """The newest decision time (epoch ms) in the tables."""
        return self._writer.newest_at

    def published_age_s(self) -> float:
        """How long readers' snapshot has trailed the writer (0 when current)."""
        return time.monotonic() - self._published if self._dirty else 0.0

    def step_latencies(self) -> list[StepLatency]:
        """Read through the owner: no other process may open its file."""
        return step_latencies(self._db.cursor())

    def saga_counts(self) -> SagaCounts:
        """Sagas started and ended, with durations (read through the owner)."""
        return saga_counts(self._db.cursor())

    def position(self, topic: str, partition: int) -> int:
        """The next offset of ``topic``/``partition`` the projection will read."""
        return self._writer.next_offset(topic, partition)

    def stop(self) -> None:
        """Leave the group and close the DuckDB file (so readers may open it)."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._beating.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self._publish()
        self._db.close()
        self._beat(stopped=True)  # readers: final, no writer running


def start_projection(
    kafka: KafkaSettings, data_dir: Path, engine: str | None = None
) -> Any:
    """The projection writer on ``<data_dir>/projections.duckdb``, publishing
    for readers into ``<data_dir>/projections/``. For a named ``engine``, a
    detached actor named after it, like the engine's own: a driver started
    again goes on with the one running."""
    named: dict[str, Any] = (
        {}
        if engine is None
        else {
            "name": f"saga-projection-{engine}",
            "get_if_exists": True,
            "lifetime": "detached",
        }
    )
    actor: Any = ray.remote(ProjectionActor).options(
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        **state_options(advertised()),
        **named,
    )
    handle = actor.remote(
        kafka, str(data_dir / "projections.duckdb"), str(data_dir / "projections")
    )
    ray.get(handle.pid.remote())
    return handle
