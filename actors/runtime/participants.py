"""The participant services on Ray: one restartable actor per service."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import ray

from actors.engine.router import BROKER_ERRORS
from actors.engine.workers import (
    Fatal,
    connect_patiently,
    die_now,
    poll_until,
    start_vital,
)
from actors.errors import UsageError
from actors.participants import PARTICIPANTS, PaymentService, serve
from actors.runtime.passwords import read_passwords
from actors.runtime.placement import advertised, state_options
from actors.runtime.ray import wait_until
from actors.topology import service_group
from events.service import CommandService, RetrySettings, ServiceStats
from events.transport.settings import KafkaSettings


class ParticipantActor:
    """A participant service in a Ray actor: its command service polls in a
    thread whose death ends the process (see :mod:`actors.engine.workers`); Ray
    restarts the actor, and the restarted one reopens the same DuckDB file and
    rejoins the same consumer group."""

    def __init__(
        self,
        kafka: KafkaSettings,
        service: str,
        path: str,
        retry: RetrySettings | None = None,
        faults: float = 0.0,
    ) -> None:
        kafka = read_passwords(kafka)  # withheld from the arguments
        self._participant = PARTICIPANTS[service](path, faults=faults)
        self._name = service_group(service)
        self._service: CommandService | None = None

        def join() -> CommandService:
            return serve(kafka, self._participant, retry=retry)

        self._join = join
        self._stopping = threading.Event()
        self._fatal = Fatal()
        self._thread = start_vital(self._name, self._run, self._fatal)

    def _run(self) -> None:
        self._service = connect_patiently(self._stopping, self._join, self._name)
        if self._service is not None:
            poll_until(
                self._stopping,
                self._service.poll_once,
                BROKER_ERRORS,
                f"{self._name} poll",
            )

    def pid(self) -> int:
        return os.getpid()

    def die_before_next_commit(self, mark: str = "") -> None:
        """`saga run --chaos`: the next batch with effects ends this process
        once decided, before its DuckDB commit (Ray restarts it; the batch is
        redelivered), once it wrote so to the file ``mark`` if one is named."""
        self._participant.die_before_next_commit(
            lambda: die_now(mark, "before its DuckDB commit")
        )

    def die_after_next_commit(self, mark: str = "") -> None:
        """`saga run --chaos`: the next batch whose effects commit ends this
        process before its replies go out (Ray restarts it), once it wrote so
        to the file ``mark`` if one is named."""
        self._participant.die_after_next_commit(
            lambda: die_now(mark, "after its DuckDB commit, before replying")
        )

    def forget_processed(self, older_than_s: float) -> int:
        """`saga run --chaos`: the idempotency cleanup now, with a retention
        of ``older_than_s`` (0: every record but those kept), as if that
        long had passed; returns how many records went. Late duplicates must
        still apply nothing: the effects' natural keys outlive the records."""
        return self._participant.idempotency.cleanup(older_than_s)

    def close_wallets_after_paying(self, saga_ids: list[str]) -> None:
        """`saga run --chaos`: the user of each of these sagas closes their
        wallet as the saga's payment commits (the payment service's
        :meth:`~actors.participants.PaymentService.close_wallets_after_paying`)."""
        self._payments().close_wallets_after_paying(saga_ids)

    def closed_wallets(self) -> list[str]:
        return self._payments().closed_wallets()

    def reopen_wallets(self) -> list[str]:
        return self._payments().reopen_wallets()

    def _payments(self) -> PaymentService:
        if not isinstance(self._participant, PaymentService):
            raise UsageError(
                f"the {self._name} service has no wallets: ask the payment service"
            )
        return self._participant

    def stats(self) -> ServiceStats:
        if self._service is None:  # still connecting
            return ServiceStats(
                handled=0, replies=0, retries=0, dead_letters=0, assigned=0
            )
        return self._service.stats()

    def fatal(self) -> str:
        """Why the service stopped for good ("" while it runs)."""
        return self._fatal.reason

    def stop(self) -> None:
        """Leave the group and close the DuckDB file (so others may open it)."""
        self._stopping.set()
        if self._service is not None:
            self._service.stop()
        self._thread.join(timeout=30)
        if self._service is not None:
            self._service.close()
        self._participant.close()


def start_participants(
    kafka: KafkaSettings,
    data_dir: Path,
    *,
    retry: RetrySettings | None = None,
    faults: float = 0.0,
) -> dict[str, Any]:
    """One participant actor per service, each with ``<data_dir>/<service>.duckdb``."""
    actor: Any = ray.remote(ParticipantActor).options(
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        **state_options(advertised()),
    )
    handles = {
        name: actor.remote(kafka, name, str(data_dir / f"{name}.duckdb"), retry, faults)
        for name in PARTICIPANTS
    }
    ray.get([h.pid.remote() for h in handles.values()])
    return handles


def participants_ready(handles: dict[str, Any], timeout_s: float = 60.0) -> None:
    """Until every participant service holds partitions of its group."""
    wait_until(
        lambda: all(
            s.assigned for s in ray.get([h.stats.remote() for h in handles.values()])
        ),
        timeout_s,
        "participant services to join their consumer groups",
    )
