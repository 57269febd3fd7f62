"""The workload of ``saga run``: seeded users, wallets and accounts, the deposit
requests with their realistic mix, and sending them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from actors.app.client import SagaClient
from actors.errors import StartError
from actors.participants import AccountService, PaymentService, UserService
from events.transport.settings import KafkaSettings

#: The payment service's limit per payment: the workload goes over it on purpose.
LIMIT: Final = 5_000

#: A saga start: its type, its input and its sagaId.
Request = tuple[str, dict[str, Any], str]


class Workload(msgspec.Struct, frozen=True):
    users: dict[str, str]
    wallets: dict[str, tuple[int, int]]
    accounts: dict[str, str]
    requests: list[Request]


def workload(count: int, seed: int, run_id: str) -> Workload:
    """Seeded data and requests: ~90% complete, ~7% rejected, ~3% compensated."""
    rng = random.Random(seed)
    pool = max(50, count // 10)
    users = {
        f"user-{i}": "blocked" if rng.random() < 0.03 else "verified"
        for i in range(pool)
    }
    wallets = {user: (10**12, LIMIT) for user in users}
    accounts = {
        f"acct-{i}": "closed" if rng.random() < 0.03 else "open" for i in range(pool)
    }
    requests = []
    for i in range(count):
        roll = rng.random()
        user = f"ghost-{i}" if roll < 0.02 else f"user-{rng.randrange(pool)}"
        amount = (
            rng.randint(LIMIT + 1, 2 * LIMIT)
            if 0.02 <= roll < 0.04
            else rng.randint(1, 2_000)
        )
        saga_input = {
            "userId": user,
            "accountId": f"acct-{rng.randrange(pool)}",
            "amount": amount,
            "currency": "USD",
        }
        requests.append(("deposit", saga_input, f"{run_id}-{i:07d}"))
    return Workload(users, wallets, accounts, requests)


def seed_participants(data_dir: Path, load: Workload) -> None:
    users = UserService(data_dir / "user.duckdb")
    users.seed(load.users)
    users.close()
    payments = PaymentService(data_dir / "payment.duckdb")
    payments.seed(load.wallets)
    payments.close()
    accounts = AccountService(data_dir / "account.duckdb")
    accounts.seed(load.accounts)
    accounts.close()


def window(total: int, max_in_flight: int, chaos: bool) -> int:
    """The most sagas sent and not ended. Under chaos a narrower window
    spreads the sagas over the faults: each strikes while a tenth of the run
    is in flight, not after it ended."""
    return min(max_in_flight, max(100, total // 10)) if chaos else max_in_flight


def send(
    kafka: KafkaSettings,
    requests: list[Request],
    ended: Callable[[], int],
    max_in_flight: int,
    report: Callable[[], None],
    say: Callable[[str], None],
    held: Callable[[], bool] = lambda: False,
    sent: Callable[[int], None] = lambda _: None,
) -> None:
    """Start the requests in chunks, with at most ``max_in_flight`` sagas sent
    but not ``ended``; ``report`` shows the progress (and strikes ``--chaos``'s
    faults as their share of the sagas has ended). The last window's worth
    waits while ``held()``: under chaos, until every fault has struck, so
    that the last of them meets sagas in flight too. ``sent`` is told how
    many requests are started, each time more are."""
    total = len(requests)
    chunk = max(100, min(total // 20, max_in_flight // 4))
    with SagaClient(kafka) as client:
        for i in range(0, total, chunk):
            # A window, as real clients have: an unbounded burst only queues,
            # and queued commands time out (DESIGN.md's ceiling has no
            # timeouts to meet).
            while i - ended() > max_in_flight or (
                i >= total - max_in_flight and held()
            ):
                report()
                time.sleep(0.05)
            start_all(client, requests[i : i + chunk], say)
            sent(min(i + chunk, total))
            report()


def start_all(
    client: SagaClient,
    requests: list[Request],
    say: Callable[[str], None],
    attempts: int = 5,
) -> None:
    """Start the requests, sending again those the broker did not acknowledge
    (same sagaIds: one that did land after all is a duplicate)."""
    pending: list[tuple[str, Mapping[str, Any], str | None]] = list(requests)
    for attempt in range(1, attempts + 1):
        try:
            client.start_many(pending)
            return
        except StartError as exc:
            if attempt == attempts:
                raise
            say(f"warning: {exc}; sending them again")
            pending = [r for r in pending if r[2] in exc.failed]
            time.sleep(min(2.0**attempt, 10.0))
