"""The demo data ``saga serve`` gives its participant services on a fresh data
directory, so a saga started by hand has someone to verify, pay and credit:
users ``u-1`` to ``u-100`` (verified), each with a wallet of 1,000,000 and a
limit of 5,000 per payment, and accounts ``a-1`` to ``a-100`` (open); besides,
``blocked-1`` is a blocked user and ``closed-1`` a closed account, to see a
rejection and a compensation."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from actors.participants.account import AccountService
from actors.participants.payment import PaymentService
from actors.participants.user import UserService

#: How many demo users and accounts.
DEMO_SIZE: Final = 100
#: Each demo wallet's balance and limit per payment.
WALLET: Final = (1_000_000, 5_000)


def seed_demo(data_dir: Path) -> list[str]:
    """Seed each service whose file in ``data_dir`` holds no data yet (a file
    with data is left as it is: the demo goes on where it was); returns the
    services seeded."""
    data_dir.mkdir(parents=True, exist_ok=True)
    users = {f"u-{i}": "verified" for i in range(1, DEMO_SIZE + 1)}
    users["blocked-1"] = "blocked"
    accounts = {f"a-{i}": "open" for i in range(1, DEMO_SIZE + 1)}
    accounts["closed-1"] = "closed"
    seeded = []
    user = UserService(data_dir / "user.duckdb")
    try:
        if not user.users:
            user.seed(users)
            seeded.append("user")
    finally:
        user.close()
    payment = PaymentService(data_dir / "payment.duckdb")
    try:
        if not payment.wallets:
            payment.seed(dict.fromkeys(users, WALLET))
            seeded.append("payment")
    finally:
        payment.close()
    account = AccountService(data_dir / "account.duckdb")
    try:
        if not account.accounts:
            account.seed(accounts)
            seeded.append("account")
    finally:
        account.close()
    return seeded
