"""The books a host keeps per owned partition.

Per partition: the live sagas (each the fold of its events) and the failed ones
(parked where an operator's retry finds them), a bounded set of the other
ended ones (so a late duplicate for them is dropped instead of dead-lettered),
the ended sagas that compensated a step in doubt (a late success for that step
is reported, not dropped), and where the partition's log and snapshots stand.
"""

from __future__ import annotations

from collections import deque

from actors.core import SagaState, Status


class PartitionBooks:
    """One owned partition: its live sagas and the books of ended ones."""

    __slots__ = (
        "doubtful",
        "end",
        "epoch",
        "finished",
        "finished_order",
        "late",
        "manifest",
        "parked",
        "retention",
        "sagas",
        "since",
    )

    def __init__(self, retention: int) -> None:
        #: How many ended sagas the books remember.
        self.retention = retention
        #: The sagas in flight, and the failed ones (``parked``).
        self.sagas: dict[str, SagaState] = {}
        #: The failed sagas among ``sagas``: a person must look, and may retry
        #: them (``saga retry``), so they stay, and go into snapshots.
        self.parked: set[str] = set()
        self.finished: set[str] = set()
        self.finished_order: deque[str] = deque()
        #: Ended sagas that compensated a step in doubt, and that step: a late
        #: success for it must be reported, not dropped as a duplicate.
        self.doubtful: dict[str, str] = {}
        #: Live sagas whose late success was reported already: the copies that
        #: follow (one per attempt sent) are duplicates. Memory only: after a
        #: restart a copy may be reported once more.
        self.late: set[str] = set()
        self.end = 0  # the log offset after the last record of this partition
        #: The epoch this host owns the partition at (see actors.core.ownership).
        self.epoch = 0
        self.since = 0  # events appended since the last snapshot
        self.manifest = -1  # offset of the newest snapshot manifest

    @property
    def in_flight(self) -> int:
        return len(self.sagas) - len(self.parked)

    def keep(self, state: SagaState) -> None:
        """A saga's newest state: live, parked (failed), or into the books of
        ended sagas."""
        if state.status is Status.FAILED:
            self.parked.add(state.saga_id)
        else:
            self.parked.discard(state.saga_id)
        if state.status.terminal and state.status is not Status.FAILED:
            reported = state.saga_id in self.late
            self.late.discard(state.saga_id)
            self.finish(state.saga_id, "" if reported else state.doubtful)
        else:
            self.sagas[state.saga_id] = state

    def finish(self, saga_id: str, doubtful: str = "") -> None:
        self.sagas.pop(saga_id, None)
        self.parked.discard(saga_id)
        if saga_id in self.finished:
            return
        self.finished.add(saga_id)
        self.finished_order.append(saga_id)
        if doubtful:
            self.doubtful[saga_id] = doubtful
        while len(self.finished_order) > self.retention:
            gone = self.finished_order.popleft()
            self.finished.discard(gone)
            self.doubtful.pop(gone, None)

    def reported_late(self, saga_id: str) -> None:
        """A late success of this saga was reported: an ended saga's books
        forget the step, a live saga's remember the report until it ends."""
        if self.doubtful.pop(saga_id, None) is None:
            self.late.add(saga_id)
