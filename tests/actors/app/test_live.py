"""A running engine's ownership as ``saga status --engine`` and ``saga top
--engine`` print it (the controller's answer is asked for on a real cluster in
``test_driver_restart.py``)."""

from __future__ import annotations

import msgspec
import pytest

from actors.app.config import SagaConfig
from actors.app.live import live_lines, live_owners
from actors.engine.controller import PartitionOwner
from actors.errors import UsageError

NODE = "f3a1c2d4" + "0" * 48


def rows(*owners: PartitionOwner) -> list[dict[str, object]]:
    return [msgspec.to_builtins(o) for o in owners]


def test_each_host_its_partitions_node_and_epoch_then_the_restores_in_progress() -> (
    None
):
    lines = live_lines(
        rows(
            PartitionOwner(0, "saga-host-e-1", 3, NODE),
            PartitionOwner(1, "saga-host-e-2", 2, ""),
            PartitionOwner(2, "saga-host-e-1", 4, NODE),
            PartitionOwner(3, "saga-host-e-2", 5, "", state="moving"),
            PartitionOwner(4, "", 7, "", state="none"),
            PartitionOwner(5, "saga-host-f-1", 9, "", state="other engine"),
        )
    )
    assert lines == [
        "live         saga-host-e-1 on node f3a1c2d4...: partitions 0, 2 "
        "(epochs [3, 4])",
        "live         saga-host-e-2: partitions 1 (epoch 2)",
        "live         saga-host-f-1 of another engine: partitions 5",
        "restoring    partitions 3: granted to saga-host-e-2, restoring up to its "
        "claim (above epoch 5)",
        "unowned      partitions 4 (epoch 7 last)",
    ]


def test_the_live_view_needs_the_clusters_address() -> None:
    with pytest.raises(UsageError, match="--ray-address"):
        live_owners(SagaConfig(), "prod")
