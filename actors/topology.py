"""The platform's names for its own parts: consumer groups and dead-letter sources.

One place for each, so a metric, a lag check and the part itself never drift
apart. Topics are named in :mod:`events.wire.topics`.
"""

from __future__ import annotations

from typing import Final

#: The source named on dead letters a saga host writes.
SAGA_HOST: Final = "saga-host"
#: The projection writer's consumer group (and its dead-letter source).
PROJECTION_GROUP: Final = "saga-projection"


def service_group(service: str) -> str:
    """A participant service's consumer group and dead-letter source."""
    return f"{service}-service"
