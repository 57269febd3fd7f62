"""Everything that puts the platform on Ray: restartable actors, started and
watched from the driver.

- :mod:`~actors.runtime.ray`: connecting to Ray, waiting on actors;
- :mod:`~actors.runtime.engine`: ``Engine``, the saga hosts and routers;
- :mod:`~actors.runtime.participants`: the participant services as actors;
- :mod:`~actors.runtime.projection`: the projection writer as an actor.
"""

from actors.runtime.engine import Engine
from actors.runtime.participants import (
    ParticipantActor,
    participants_ready,
    start_participants,
)
from actors.runtime.projection import ProjectionActor, start_projection
from actors.runtime.ray import ensure_ray, wait_until

__all__ = [
    "Engine",
    "ParticipantActor",
    "ProjectionActor",
    "ensure_ray",
    "participants_ready",
    "start_participants",
    "start_projection",
    "wait_until",
]
