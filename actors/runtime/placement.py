"""The custom resources that place the platform's actors on a Ray cluster.

Ray places an actor that asks for no resources at all (``num_cpus=0`` and
nothing else) on a node chosen at random, the head included, at its start and
at every restart, and ``scheduling_strategy="SPREAD"`` is ignored for it. So
every platform actor asks for a custom resource that only the right node types
advertise (``ray_cluster.yaml`` at the repository root; a test holds the two
equal):

- :data:`SLOT_RESOURCE`: the saga hosts, the routers and the controller ask
  for 1 each. Only the worker node type advertises it (8 per node), so none of
  them lands on the head, and a node takes at most that many of them.
- :data:`STATE_RESOURCE`: the participant services and the projection writer,
  whose DuckDB files live on that node's persistent volume, ask for it.
  Exactly one node type advertises it, 1 per node, with one node of that type
  (``min_workers`` = ``max_workers`` = 1), so a restarted service comes back
  beside its files. Several actors share that one unit: each asks for a
  fraction of it (Ray takes fractional custom resources), never for all of it.

What is asked for follows what the cluster advertises: a local Ray (tests,
``saga run`` on one machine) advertises neither, and the actors go anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import ray

SLOT_RESOURCE: Final = "saga_slot"
STATE_RESOURCE: Final = "saga_state"

#: The share of the state node's one unit each stateful actor asks for: the
#: three services and the projection writer all fit, with room to spare.
STATE_SHARE: Final = 0.01


def slot_options(cluster: Mapping[str, float]) -> dict[str, Any]:
    """Ray options for a host, a router or the controller on a cluster with
    the resources ``cluster`` (``ray.cluster_resources()``): one slot each,
    spread over the nodes that have them. A cluster that advertises no slots
    (a local Ray, a cluster not set up by ``ray_cluster.yaml``) gets nothing
    asked: any node will do."""
    if SLOT_RESOURCE not in cluster:
        return {}
    return {"resources": {SLOT_RESOURCE: 1}, "scheduling_strategy": "SPREAD"}


def state_options(cluster: Mapping[str, float]) -> dict[str, Any]:
    """Ray options for a participant service or the projection writer: a
    share of the state node, where their DuckDB files are (nothing asked on a
    cluster without one)."""
    if STATE_RESOURCE not in cluster:
        return {}
    return {"resources": {STATE_RESOURCE: STATE_SHARE}}


def advertised() -> dict[str, float]:
    """The resources of the cluster this process is connected to."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return resources
