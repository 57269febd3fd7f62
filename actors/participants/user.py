"""The user service: verification of known, unblocked users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from actors.participants.base import Outcome, Participant, insert_rows
from events.wire.messages import CommandMessage


class UserService(Participant):
    """Verification: known, verified users pass; unknown or blocked users fail."""

    service = "user"
    actions = ("verify",)
    schema = """
        CREATE TABLE IF NOT EXISTS users (
            user_id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL);
        CREATE TABLE IF NOT EXISTS verifications (
            saga_id VARCHAR, user_id VARCHAR, passed BOOLEAN, created_at TIMESTAMPTZ);
    """

    def load(self) -> None:
        rows = self.db.execute("SELECT user_id, status FROM users").fetchall()
        self.users: dict[str, str] = dict(rows)

    def seed(self, users: dict[str, str]) -> None:
        insert_rows(self.db, "users", list(users.items()))
        self.users.update(users)

    def begin(self) -> None:
        self._checks: list[tuple[Any, ...]] = []

    def decide(self, command: CommandMessage, now: datetime) -> Outcome:
        user = str(command.payload.get("userId", ""))
        status = self.users.get(user)
        passed = status == "verified"
        self._checks.append((command.saga_id, user, passed, now))
        if passed:
            return Outcome(True, {"userId": user})
        reason = "unknown user" if status is None else f"user is {status}"
        return Outcome(False, error=f"{reason}: {user}")

    def write(self, db: duckdb.DuckDBPyConnection) -> None:
        insert_rows(db, "verifications", self._checks)

    def adopt(self) -> None:
        self._checks = []
