"""The platform's participant services by name, and how each one is served."""

from __future__ import annotations

from actors.participants.account import AccountService
from actors.participants.base import Participant
from actors.participants.payment import PaymentService
from actors.participants.user import UserService
from actors.topology import service_group
from events.service import CommandService, RetrySettings
from events.transport.settings import KafkaSettings

PARTICIPANTS: dict[str, type[Participant]] = {
    cls.service: cls for cls in (UserService, PaymentService, AccountService)
}


def serve(
    kafka: KafkaSettings,
    participant: Participant,
    *,
    retry: RetrySettings | None = None,
) -> CommandService:
    """A command service for ``participant`` in group ``<service>-service``."""
    return CommandService(
        kafka,
        service_group(participant.service),
        participant.topics,
        participant.handle,
        group_id=service_group(participant.service),
        retry=retry,
    )
