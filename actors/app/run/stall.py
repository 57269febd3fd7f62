"""Why a run stalled: where the sagas that did not end are, and what holds them.

A run that gives up leaves the audit to count what went wrong; this says
where to look first, while the platform still runs: the unended sagas by
home partition, each partition's owner as the controller sees it, and a
sample saga's live state from that owner (held behind a letter, waiting on a
step, or unknown to it), with the routers' and hosts' own accounts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.core import SagaState
from actors.runtime.engine import Engine
from events.transport.partitions import home_partition

#: How long one answer from an actor is waited for.
_ASK_S = 10.0


def explain_stall(
    engine: Engine, unended: Iterable[str], now_ms: int, say: Callable[[str], None]
) -> None:
    """Say where the sagas of ``unended`` wait, partition by partition."""
    by_partition: dict[int, list[str]] = defaultdict(list)
    for saga_id in sorted(unended):
        by_partition[home_partition(saga_id, engine.partitions)].append(saga_id)
    if not by_partition:
        return
    answer = _ask(engine.controller.owners.remote())
    if isinstance(answer, Exception):
        say(f"stalled: the controller did not answer ({answer})")
        answer = []
    owners = {o.partition: o for o in answer}
    for number, ids in sorted(by_partition.items()):
        owner = owners.get(number)
        where = (
            "no owner known"
            if owner is None
            else f"{owner.state} by {owner.host or 'no host'} at epoch {owner.epoch}"
        )
        say(f"stalled: partition {number}: {len(ids)} saga(s) unended; {where}")
        if owner is None or not owner.host:
            continue
        try:
            host = ray.get_actor(owner.host)
        except ValueError:
            say(f"stalled:   host {owner.host} is not found")
            continue
        for saga_id in ids[:2]:
            state = _ask(host.state.remote(saga_id))
            say(f"stalled:   {saga_id}: {_describe(state, now_ms)}")
    for host in engine.hosts:
        owns, stats = _ask(host.ownership.remote()), _ask(host.stats.remote())
        say(f"stalled: host {owns}: {stats}")
    for router in engine.routers:
        stats = _ask(router.stats.remote())
        if isinstance(stats, Exception):
            say(f"stalled: a router did not answer ({stats})")
            continue
        say(
            f"stalled: router: assigned {stats.assigned}, host failures "
            f"{stats.host_failures}, not owned {stats.not_owned}, routes version "
            f"{stats.routes_version}, fatal {stats.fatal or '-'}, fatal hosts "
            f"{stats.fatal_hosts or '-'}"
        )


def _describe(state: SagaState | Exception | None, now_ms: int) -> str:
    if isinstance(state, Exception):
        return f"its host did not answer ({state})"
    if state is None:
        return "not in flight on its owner (ended there, or unknown to it)"
    due = "no deadline"
    if state.deadline:
        due = f"deadline in {(state.deadline - now_ms) / 1000:.1f} s"
    held = ""
    if state.held:
        held = f", held behind {state.held} ({len(state.held_replies)} replies held)"
    return (
        f"{state.status} at step {state.step_id!r} attempt {state.attempt}, "
        f"{due}{', retrying' if state.retrying else ''}{held}"
    )


def _ask(ref: Any) -> Any:
    try:
        return ray.get(ref, timeout=_ASK_S)
    except (RayError, GetTimeoutError) as exc:
        return exc
