"""The engine's settings: how many hosts and routers, and how a host keeps its
sagas. Part of the one application configuration (:mod:`actors.app.config`)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Positive = Annotated[int, msgspec.Meta(gt=0)]


class HostSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a host keeps its sagas."""

    #: Snapshot a partition after this many saga events were appended to it.
    snapshot_every: Positive = 20_000
    #: Ended sagaIds remembered per partition, to recognise late duplicates.
    finished_retention: Positive = 50_000
    #: How often deadlines are checked, in milliseconds.
    tick_ms: Positive = 100
    #: After a restore, deadlines that passed while the host was down wait this
    #: long for replies already on their way.
    restore_grace_ms: Positive = 5_000
    #: How often an idle owner checks that no one else wrote its partitions
    #: (a newer owner's claim), in milliseconds.
    fence_check_ms: Positive = 2_000


class EngineSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How many actors run the sagas."""

    #: A named engine's actors are detached and named after it: they outlive
    #: the process that started them, a ``saga serve`` started again with the
    #: same name goes on with them, and ``saga scale`` finds them. Unnamed (the
    #: default), each start is a new engine whose actors end with its process.
    name: Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,30}$")] | None = (
        None
    )
    hosts: Positive = 2
    routers: Positive = 1
    host: HostSettings = HostSettings()
    #: How long start-up waits for the hosts to restore: they wait out a
    #: broker that is down, and start-up says so after this long.
    start_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    #: A host that does not answer the controller this long has its partitions
    #: granted to other hosts (its node died, or it hangs).
    host_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
