"""A running engine's ownership as its controller sees it, for ``saga status``
and ``saga top``: which host owns each partition, on which node, at which
epoch, and which partitions are being restored by a new owner right now.

The projections show ownership as the log's claims say it; a restore in
progress has appended no claim yet (a host restores first, then claims), so
only the controller, which granted the partition, knows of it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors.app.config import SagaConfig
from actors.app.owners import on_node
from actors.errors import UsageError

#: How long the controller's answer is waited for.
_ASK_S = 10.0


def live_owners(config: SagaConfig, engine: str) -> list[dict[str, Any]]:
    """Each partition's owner from the controller of the named ``engine``, on
    the configured Ray cluster (raises :class:`UsageError` when there is no
    cluster to ask, or no such engine on it)."""
    if not config.ray.address:
        raise UsageError(
            f"--engine {engine} asks the engine's controller on its Ray cluster: "
            "pass --ray-address (auto on a node of the cluster) as well"
        )
    # Ray is imported here: the projections' reports start without it.
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    from actors.engine.controller import controller_name
    from actors.runtime.ray import ensure_ray

    ensure_ray(config.ray, quiet=True)
    try:
        controller = ray.get_actor(controller_name(engine))
    except ValueError:
        raise UsageError(
            f"no engine {engine!r} runs on the Ray cluster at {config.ray.address} "
            f"(namespace {config.ray.namespace!r}): check --engine (saga serve's "
            "engine.name)"
        ) from None
    try:
        owners: list[Any] = ray.get(controller.owners.remote(), timeout=_ASK_S)
    except (RayError, GetTimeoutError) as exc:
        raise UsageError(
            f"the controller of engine {engine!r} did not answer: {exc}"
        ) from exc
    return [msgspec.to_builtins(owner) for owner in owners]


def live_lines(owners: list[dict[str, Any]]) -> list[str]:
    """A line per host with its partitions (node, epochs), then the
    partitions being restored by their new owner, and those with none."""
    by_host: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for owner in owners:
        by_host.setdefault((owner["state"], owner["host"]), []).append(owner)
    lines = []
    for (state, host), rows in sorted(by_host.items(), key=_order):
        numbers = ", ".join(str(row["partition"]) for row in rows)
        where = on_node(rows[0]["node"])
        epochs = sorted({row["epoch"] for row in rows})
        epoch = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs}"
        if state == "owned":
            text = f"live         {host}{where}: partitions {numbers} ({epoch})"
        elif state == "moving":
            text = (
                f"restoring    partitions {numbers}: granted to {host}, "
                f"restoring up to its claim (above {epoch})"
            )
        elif state == "other engine":
            text = f"live         {host} of another engine: partitions {numbers}"
        else:
            text = f"unowned      partitions {numbers} ({epoch} last)"
        lines.append(text)
    return lines


def _order(item: tuple[tuple[str, str], list[dict[str, Any]]]) -> tuple[int, str]:
    (state, host), _ = item
    rank = {"owned": 0, "other engine": 1, "moving": 2}.get(state, 3)
    return rank, host
