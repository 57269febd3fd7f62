"""The platform's participant services, simulated here: user, payment, account.

Each is a :class:`~events.service.CommandService` over its command topics with a
domain handler whose state lives in its own DuckDB file:

- :mod:`~actors.participants.base`: what every service shares (a batch decided
  in memory, its effects and idempotency records in one transaction);
- :mod:`~actors.participants.user`, :mod:`~actors.participants.payment`,
  :mod:`~actors.participants.account`: the three services' rules;
- :mod:`~actors.participants.idempotency`: the exactly-once store;
- :mod:`~actors.participants.services`: the services by name, and serving one;
- :mod:`~actors.participants.audit`: money counted from the services' files;
- :mod:`~actors.participants.demo`: the demo data ``saga serve`` seeds.
"""

from actors.participants.account import AccountService
from actors.participants.base import (
    Outcome,
    Participant,
    TransientFault,
    idempotency_key,
)
from actors.participants.demo import seed_demo
from actors.participants.payment import PaymentService
from actors.participants.services import PARTICIPANTS, serve
from actors.participants.user import UserService

__all__ = [
    "PARTICIPANTS",
    "AccountService",
    "Outcome",
    "Participant",
    "PaymentService",
    "TransientFault",
    "UserService",
    "idempotency_key",
    "seed_demo",
    "serve",
]
