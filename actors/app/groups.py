"""The platform's consumer groups and the topics each reads.

One map for everything that reports or waits on consumer lag (``saga status``,
``saga top``, the metrics endpoint, the end of ``saga run``): a group is
listed with its topics whether or not it has ever committed, so a service
that never started shows as behind by everything, not as missing.
"""

from __future__ import annotations

from actors.core import DEFINITIONS
from actors.engine.router import listened_topics
from actors.participants import PARTICIPANTS
from actors.topology import PROJECTION_GROUP, service_group
from events.wire.topics import (
    SAGA_DLQ,
    SAGA_DLQ_ACTIONS,
    SAGA_EVENTS,
    command_topic,
)


def consumer_groups(orchestrator_group: str) -> dict[str, list[str]]:
    """Each consumer group of the platform and the topics it reads: the
    routers' (``orchestrator_group``), each participant service's and the
    projection writer's."""
    groups = {orchestrator_group: listened_topics(DEFINITIONS)}
    for name, cls in PARTICIPANTS.items():
        groups[service_group(name)] = [
            command_topic(cls.service, action) for action in cls.actions
        ]
    groups[PROJECTION_GROUP] = [SAGA_EVENTS, SAGA_DLQ, SAGA_DLQ_ACTIONS]
    return groups
