"""What the tests of partitions moving between hosts read: whether any saga
was driven by two hosts (two different records for one ``(sagaId, seq)`` on
``saga.events``, fenced or not), and an engine's hosts' names. The moves
themselves: ``test_moves.py`` (a local Ray) and ``cluster_runs.py`` (a
multi-node cluster, under ``saga run``).
"""

from __future__ import annotations

from collections import defaultdict

import ray

from actors.core import Fence, LogCodec, LogRecord
from actors.runtime.engine import Engine
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP
from events.wire.topics import SAGA_EVENTS
from tests.actors.runtime.test_engine import PARTITIONS


def driven_twice(
    kafka: KafkaSettings, *, fence: Fence | None = None
) -> dict[tuple[str, int], int]:
    """``(sagaId, seq)`` with more than one distinct record in the log: every
    record, or (with a ``fence``) those a reader applies."""
    codec = LogCodec()
    seen: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    tps = {TP(SAGA_EVENTS, p): 0 for p in range(PARTITIONS)}
    for raw in read_to_end(kafka, tps):
        entry = codec.decode(raw.value)
        if fence is not None and not fence.admit(raw.partition, entry):
            continue
        if isinstance(entry, LogRecord):
            seen[(entry.saga_id, entry.seq)].add(codec.encode(entry.events))
    return {key: len(v) for key, v in seen.items() if len(v) > 1}


def host_names(engine: Engine) -> set[str]:
    return {r.host.name for r in ray.get([h.ownership.remote() for h in engine.hosts])}
