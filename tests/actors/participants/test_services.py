"""Participant services' domain rules: one effect per step, refusals decided
afresh or kept, natural keys past idempotency retention. In-process, on real
DuckDB files (over a real broker: test_services_on_kafka.py).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from actors.participants import AccountService, PaymentService, UserService
from tests.actors.participants.messages import command, pay, refund


def test_payment_rules_and_one_effect_per_step(tmp_path: Path) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500), "u-2": (50, 500)})
    replies = payments.handle(
        [
            pay("s-1"),
            pay("s-2", amount=600),  # over the limit
            pay("s-3", user="u-2"),  # insufficient funds
            pay("s-4", user="nobody"),
            pay("s-1", attempt=2),  # attempt 2 of s-1's step: the same effect
        ]
    )
    assert [r.success for r in replies] == [True, False, False, False, True]
    assert "over the limit" in (replies[1].error or "")
    assert replies[2].error == "insufficient funds"
    assert replies[4] == replies[0]
    again = payments.handle([pay("s-1")])  # a redelivery, later
    assert again == [replies[0]]
    refund = command(
        "s-1", "process_payment.compensate", "payment", paymentId="pay-s-1"
    )
    [refunded] = payments.handle([refund])
    assert refunded.success and refunded.payload["refunded"] == 100
    assert payments.handle([refund]) == [refunded]
    # A refund for a payment that never happened (its command timed out on the
    # way): nothing to give back, and the late payment is then refused.
    [nothing] = payments.handle(
        [command("s-9", "process_payment.compensate", "payment", sagaId="s-9")]
    )
    assert nothing.success and nothing.payload["refunded"] == 0
    [late] = payments.handle([pay("s-9")])
    assert not late.success and "rolled back" in (late.error or "")
    payments.close()
    # State and effects are on disk: a new instance sees them.
    reopened = PaymentService(tmp_path / "payment.duckdb")
    assert reopened.wallets["u-1"][0] == 1_000
    rows = reopened.db.execute(
        "SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM refunds)"
    ).fetchone()
    assert rows == (1, 2)  # the refund of s-1, and s-9's marker
    reopened.close()


def test_user_and_account_rules(tmp_path: Path) -> None:
    users = UserService(tmp_path / "user.duckdb")
    users.seed({"u-ok": "verified", "u-bad": "blocked"})
    verified = users.handle(
        [
            command(f"s-{u}", "verify_user", "user", userId=u)
            for u in ("u-ok", "u-bad", "u-x")
        ]
    )
    assert [r.success for r in verified] == [True, False, False]
    assert verified[1].error == "user is blocked: u-bad"
    assert verified[2].error == "unknown user: u-x"
    accounts = AccountService(tmp_path / "account.duckdb")
    accounts.seed({"a-open": "open", "a-closed": "closed"})
    deposited = accounts.handle(
        [
            command("s-1", "deposit", "account", accountId="a-open", amount=70),
            command("s-2", "deposit", "account", accountId="a-closed", amount=70),
            command("s-3", "deposit", "account", accountId="a-open", amount=30),
        ]
    )
    assert [r.success for r in deposited] == [True, False, True]
    assert deposited[2].payload["balance"] == 100
    users.close()
    accounts.close()


def test_a_refused_refund_is_decided_afresh_but_a_refused_payment_stays(
    tmp_path: Path,
) -> None:
    payments = PaymentService(tmp_path / "payment.duckdb")
    payments.seed({"u-1": (1_000, 500)})
    [paid] = payments.handle([pay("s-1")])
    assert paid.success and paid.command_id == "s-1:process_payment:1"
    # The wallet is closed between the payment and its refund: nowhere to
    # put the money back, so the refund is refused for now.
    payments.db.execute("DELETE FROM wallets WHERE user_id = 'u-1'")
    payments.load()
    [refused] = payments.handle([refund("s-1", 1)])
    assert not refused.success and "no wallet for user u-1" in (refused.error or "")
    [again] = payments.handle([refund("s-1", 2)])  # decided afresh: still refused
    assert not again.success and again.message_id != refused.message_id
    payments.seed({"u-1": (1_000, 500)})  # the wallet is back
    [healed] = payments.handle([refund("s-1", 3)])
    assert healed.success and healed.payload["refunded"] == 100
    assert healed.message_id == "s-1:process_payment.compensate:3:reply"
    assert healed.command_id == "s-1:process_payment.compensate:3"
    # A success is recorded: attempt 4 gets it as stored, attempt 3's reply.
    assert payments.handle([refund("s-1", 4)]) == [healed]
    assert payments.wallets["u-1"][0] == 1_100
    # A refused forward command stays refused, with the reply of its first
    # attempt, even after the reason went away: no payment for a saga that
    # was told no.
    [poor] = payments.handle([pay("s-2", user="u-3")])
    assert not poor.success and "no wallet for user u-3" in (poor.error or "")
    payments.seed({"u-3": (1_000, 500)})
    assert payments.handle([pay("s-2", user="u-3", attempt=2)]) == [poor]
    rows = payments.db.execute(
        "SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM refunds)"
    ).fetchone()
    assert rows == (1, 1)
    payments.close()


def test_late_duplicates_past_idempotency_retention_apply_nothing(
    tmp_path: Path,
) -> None:
    now = [1_700_000_000.0]
    past_retention = 8 * 24 * 3600  # the records are kept 7 days

    def clock() -> float:
        return now[0]

    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    payments.seed({"u-1": (1_000, 500)})
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    accounts.seed({"a-1": "open"})
    [paid] = payments.handle([pay("s-1")])
    deposit = command("s-1", "deposit", "account", accountId="a-1", amount=100)
    [deposited] = accounts.handle([deposit])
    assert paid.success and deposited.success
    now[0] += past_retention
    assert payments.idempotency.cleanup() == 1
    assert accounts.idempotency.cleanup() == 1
    # The same commands again, as a dead-letter replay would send them.
    [late_payment] = payments.handle([pay("s-1")])
    assert late_payment.success and late_payment.payload == paid.payload
    [late_deposit] = accounts.handle([deposit])
    assert late_deposit.success and late_deposit.payload["alreadyDeposited"]
    assert late_deposit.payload["accountId"] == "a-1"
    # Twice in one batch, with a new attempt number: still one effect.
    assert all(r.success for r in payments.handle([pay("s-2"), pay("s-2", 2)]))
    payments.close()
    accounts.close()
    # The natural keys come from the tables: a restarted service keeps them.
    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    now[0] += past_retention
    payments.idempotency.cleanup()
    accounts.idempotency.cleanup()
    assert payments.handle([pay("s-1", attempt=3)])[0].success
    assert accounts.handle([deposit])[0].success
    assert payments.db.execute(
        "SELECT payment_id, count(*) FROM payments GROUP BY ALL ORDER BY 1"
    ).fetchall() == [("pay-s-1", 1), ("pay-s-2", 1)]
    assert payments.db.execute("SELECT balance FROM wallets").fetchone() == (800,)
    assert accounts.db.execute("SELECT count(*) FROM deposits").fetchone() == (1,)
    assert accounts.db.execute("SELECT balance FROM accounts").fetchone() == (100,)
    payments.close()
    accounts.close()


def test_refusals_stay_refusals_past_the_idempotency_retention(
    tmp_path: Path,
) -> None:
    """No effect row remembers a refusal: a deposit refused (the saga then
    refunded the payment) must not land when its duplicate comes after the
    retention to an account opened since, nor a refused payment be taken from
    a wallet funded since (money created, and money taken from a rejected
    saga)."""
    now = [1_700_000_000.0]
    past_retention = 8 * 24 * 3600

    def clock() -> float:
        return now[0]

    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    payments.seed({"u-1": (50, 500)})
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    accounts.seed({"a-1": "closed"})
    deposit = command("s-1", "deposit", "account", accountId="a-1", amount=100)
    [poor] = payments.handle([pay("s-2")])  # 100 from a wallet of 50
    [shut] = accounts.handle([deposit])
    assert not poor.success and not shut.success
    now[0] += past_retention
    assert payments.idempotency.cleanup() == 0
    assert accounts.idempotency.cleanup() == 0
    payments.close()
    accounts.close()
    # Since then the wallet was funded and the account opened; the services
    # restarted. The duplicates get the refusals they got.
    with duckdb.connect(str(tmp_path / "payment.duckdb")) as db:
        db.execute("UPDATE wallets SET balance = 1000")
    with duckdb.connect(str(tmp_path / "account.duckdb")) as db:
        db.execute("UPDATE accounts SET status = 'open'")
    payments = PaymentService(tmp_path / "payment.duckdb", clock=clock)
    accounts = AccountService(tmp_path / "account.duckdb", clock=clock)
    now[0] += past_retention
    payments.idempotency.cleanup()
    accounts.idempotency.cleanup()
    assert payments.handle([pay("s-2", attempt=2)]) == [poor]
    assert accounts.handle([deposit]) == [shut]
    assert payments.db.execute("SELECT count(*) FROM payments").fetchall() == [(0,)]
    assert accounts.db.execute("SELECT count(*) FROM deposits").fetchall() == [(0,)]
    # A success's record still goes with the retention (its effect row stays).
    [paid] = payments.handle([pay("s-3")])
    assert paid.success
    now[0] += past_retention
    assert payments.idempotency.cleanup() == 1
    payments.close()
    accounts.close()


def test_a_wallet_closed_as_its_saga_pays_refuses_the_refund_until_reopened(
    tmp_path: Path,
) -> None:
    """`saga run --chaos`'s refund-refused: the user closes the wallet in the
    payment's own transaction, with the balance the payment left; every
    refund attempt is refused (and not recorded) until it reopens; restarts
    forget neither the arming nor the closed wallet."""
    path = tmp_path / "payment.duckdb"
    payments = PaymentService(path)
    payments.seed({"u-1": (1_000, 500), "u-2": (1_000, 500)})
    payments.close_wallets_after_paying(["s-1"])
    payments.close()
    payments = PaymentService(path)  # restarted before the payment: still armed
    paid = payments.handle([pay("s-1"), pay("s-2", user="u-2")])
    assert all(r.success for r in paid)
    assert payments.closed_wallets() == ["u-1"]  # not u-2: not a closing saga
    assert "u-1" not in payments.wallets
    for attempt in (1, 2):
        [refused] = payments.handle([refund("s-1", attempt)])
        assert not refused.success
        assert "no wallet for user u-1 to refund 100" in (refused.error or "")
    # A user's next saga cannot pay from a closed wallet either.
    [poor] = payments.handle([pay("s-3")])
    assert not poor.success and "no wallet for user u-1" in (poor.error or "")
    payments.close()

    payments = PaymentService(path)  # restarted: still closed, balance kept
    assert payments.closed_wallets() == ["u-1"] and "u-1" not in payments.wallets
    assert payments.reopen_wallets() == ["u-1"]
    assert payments.closed_wallets() == [] and payments.wallets["u-1"][0] == 900
    [healed] = payments.handle([refund("s-1", 3)])
    assert healed.success and healed.payload["refunded"] == 100
    assert payments.wallets["u-1"][0] == 1_000
    # Armed once: the next payment of the same user leaves the wallet open.
    assert payments.handle([pay("s-4")])[0].success
    assert payments.closed_wallets() == []
    payments.close()
