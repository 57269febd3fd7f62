"""The topic catalog: every topic of the platform, and the naming rule.

Service topics are named ``<service>.commands.<action>`` (the orchestrator's
instructions) and ``<service>.events.<action>`` (the service's answers). The saga
topics (``saga.*``) belong to the orchestrator itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from events.errors import InvalidTopicNameError


class Direction(StrEnum):
    COMMANDS = "commands"
    EVENTS = "events"


_NAME = re.compile(
    r"^(?P<service>[a-z][a-z0-9-]*)\.(?P<direction>commands|events)\."
    r"(?P<action>[a-z][a-z0-9-]*)$"
)


@dataclass(frozen=True, slots=True)
class ServiceTopic:
    """A parsed service topic name."""

    service: str
    direction: Direction
    action: str

    @property
    def name(self) -> str:
        return f"{self.service}.{self.direction.value}.{self.action}"

    @property
    def reply(self) -> ServiceTopic:
        """The events topic that answers this commands topic."""
        if self.direction is not Direction.COMMANDS:
            raise InvalidTopicNameError(f"{self.name} is not a commands topic")
        return ServiceTopic(self.service, Direction.EVENTS, self.action)


def parse_topic(name: str) -> ServiceTopic:
    """Parse ``<service>.commands|events.<action>``, or say what is wrong."""
    match = _NAME.match(name)
    if match is None:
        raise InvalidTopicNameError(
            f"topic {name!r} does not follow <service>.commands|events.<action> "
            "(lower case letters, digits and dashes, e.g. payment.commands.process)"
        )
    return ServiceTopic(
        match["service"], Direction(match["direction"]), match["action"]
    )


def command_topic(service: str, action: str) -> str:
    return parse_topic(f"{service}.commands.{action}").name


def event_topic(service: str, action: str) -> str:
    return parse_topic(f"{service}.events.{action}").name


# The orchestrator's own topics.
SAGA_REQUESTS: Final = "saga.requests"
SAGA_EVENTS: Final = "saga.events"
SAGA_DLQ: Final = "saga.dlq"
#: What operators did with the dead letters (replayed, resolved): their state.
SAGA_DLQ_ACTIONS: Final = "saga.dlq.actions"
#: Snapshots of in-flight sagas, per partition of ``saga.events``.
SAGA_SNAPSHOTS: Final = "saga.snapshots"

# The participant services' actions, as (service, action). Refund is the
# compensation of payment processing.
SERVICE_ACTIONS: Final = (
    ("user", "verify"),
    ("payment", "process"),
    ("payment", "refund"),
    ("account", "deposit"),
)

COMMAND_TOPICS: Final = tuple(command_topic(s, a) for s, a in SERVICE_ACTIONS)
EVENT_TOPICS: Final = tuple(event_topic(s, a) for s, a in SERVICE_ACTIONS)
SAGA_TOPICS: Final = (
    SAGA_REQUESTS,
    SAGA_EVENTS,
    SAGA_SNAPSHOTS,
    SAGA_DLQ,
    SAGA_DLQ_ACTIONS,
)

#: Every topic the platform uses. All have the same partition count, so a sagaId
#: maps to the same partition number on every one of them.
ALL_TOPICS: Final = SAGA_TOPICS + COMMAND_TOPICS + EVENT_TOPICS

#: The platform's own record, which must keep every message: the saga log and
#: its snapshots (a restore reads them back from their start), the dead
#: letters and what was done with them (nothing else holds them). Time- or
#: size-bound retention would lose sagas; compaction would keep only a saga's
#: last log record.
KEPT_FOREVER: Final = (SAGA_EVENTS, SAGA_SNAPSHOTS, SAGA_DLQ, SAGA_DLQ_ACTIONS)
#: The configs the platform creates those topics with.
KEEP_FOREVER_CONFIGS: Final = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}


def retention_problems(topic: str, configs: Mapping[str, str]) -> list[str]:
    """Why ``topic``'s configs would lose records the platform needs (empty if
    none). A config the broker does not report is not judged."""
    if topic not in KEPT_FOREVER:
        return []
    return [
        f"{topic} has {key}={configs[key]} (must be {wanted})"
        for key, wanted in KEEP_FOREVER_CONFIGS.items()
        if key in configs and configs[key] != wanted
    ]
