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
"""

from __future__ import annotations

from typing import Final

SLOT_RESOURCE: Final = "saga_slot"
STATE_RESOURCE: Final = "saga_state"
