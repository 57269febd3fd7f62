"""The backtest, on recordings made by the real decider: the recorded policy
replays every history exactly; a changed policy changes outcomes as the
recorded answers' times say it must."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from actors.analysis.backtest import backtest, recordings
from actors.analysis.policy import Policy
from actors.core import DEFINITIONS, LogRecord, Tick
from actors.errors import BacktestError, PolicyError
from events.wire.messages import EventMessage
from tests.actors.core.sagas import Run, random_history, reply_to
from tests.actors.core.test_golden import SCENARIOS

SEED = 20261127
T0 = 1_700_000_000_000


def policy(text: str) -> Policy:
    return Policy.parse(text.encode(), "policy.toml")


def test_the_recorded_policy_replays_every_recorded_history_exactly() -> None:
    print(f"random histories seeded with {SEED}")
    logs: dict[str, list[LogRecord]] = {}
    for name, (script, _) in SCENARIOS.items():
        run = Run(saga_id=f"g-{name}")
        script(run)
        logs[run.saga_id] = run.records()
    rng = random.Random(SEED)
    runs = [random_history(rng, f"r-{i}") for i in range(400)]
    # The recording ends when the last of them stops; until then the
    # engine's timer acts on every deadline, as it would have.
    end = max(run.records()[-1].at for run in runs)
    for run in runs:
        state = run.state
        while state and state.deadline and not state.held and state.deadline <= end:
            run.feed(Tick(saga_id=run.saga_id, now=state.deadline, jitter=0.5))
            state = None if run.state is state else run.state
        logs[run.saga_id] = run.records()
    found = recordings(logs, {}, DEFINITIONS)
    result = backtest(found, DEFINITIONS, Policy(), seed=7)
    assert result.mismatches == []
    assert result.changed == []
    assert result.baseline == result.candidate
    statuses = {b.at_end for b, _ in result.pairs}
    assert {"completed", "compensated", "rejected", "failed", "running"} <= statuses


class Frozen:
    """A recorded run: sagas answered in milliseconds, and sagas whose
    payment or deposit went unanswered while its service was frozen, each
    answered ``seconds`` after its first command."""

    def __init__(self) -> None:
        self.logs: dict[str, list[LogRecord]] = {}
        self.late: dict[str, list[tuple[int, EventMessage]]] = {}
        self.now = T0

    def normal(self, saga_id: str) -> None:
        run = Run(saga_id)
        run.start(now=self.now)
        for after, payload in ((40, {}), (90, {"paymentId": "p"}), (130, {})):
            run.feed(reply_to(run.sent[-1], self.now + after, **payload))
        self.logs[saga_id] = run.records()
        self.now += 1_000

    def frozen(
        self, saga_id: str, step: str, seconds: float, *, letter: bool = True
    ) -> Run:
        """``letter``: a late success is dead-lettered (else the participant
        refused the payment the refund barred: a reply its host drops)."""
        run = Run(saga_id)
        run.start(now=self.now)
        run.feed(reply_to(run.sent[-1], self.now + 40))
        if step == "deposit":
            run.feed(reply_to(run.sent[-1], self.now + 90, paymentId="p"))
        first = run.sent[-1]
        answered = first_sent = run.records()[-1].at
        answered += round(seconds * 1000)
        jitter = random.Random(saga_id)
        state = run.state
        assert state is not None
        # The engine's timer acts a few milliseconds after each deadline
        # until the step is given up on (payment) or the answer comes.
        while state.step == step and not state.compensating:
            due = state.deadline + 3
            if due >= answered:
                break
            run.feed(Tick(saga_id=saga_id, now=due, jitter=jitter.random()))
            state = run.state
            assert state is not None
        reply = reply_to(first, answered, paymentId="p")
        if state.compensating:  # gave up on the payment: refund, late success
            run.feed(reply_to(run.sent[-1], answered + 10, refundId="r"))
            message = EventMessage(
                message_id=reply.message_id,
                saga_id=saga_id,
                step_id=step,
                timestamp=datetime.fromtimestamp(answered / 1000, UTC),
                success=True,
                payload={"paymentId": "p"},
            )
            if letter:
                self.late[saga_id] = [(answered, message)]
        else:
            run.feed(reply)
        assert run.state is not None and first_sent < answered
        self.logs[saga_id] = run.records()
        self.now += 1_000
        return run


def frozen_payments() -> Frozen:
    recorded = Frozen()
    for i in range(30):
        recorded.normal(f"ok-{i}")
    for seconds in (35, 45, 70):
        recorded.frozen(f"payment-{seconds}s", "process_payment", seconds)
    for i in range(30, 40):
        recorded.normal(f"ok-{i}")
    return recorded


def test_a_longer_payment_timeout_completes_the_sagas_it_would_have_waited_for() -> (
    None
):
    recorded = frozen_payments()
    found = recordings(recorded.logs, recorded.late, DEFINITIONS)
    statuses = {r.saga_id: r.status for r in found}
    # Three attempts of 10 s (and backoffs) give up after about 31.5 s.
    assert [statuses[f"payment-{s}s"] for s in (35, 45, 70)] == ["compensated"] * 3

    # 12 s a try waits about 37.5 s: long enough for the 35 s answer only.
    tried = backtest(found, DEFINITIONS, policy(TIMEOUT.format(12_000)), seed=3)
    assert tried.mismatches == []
    assert [(c.saga_id, c.baseline, c.candidate) for c in tried.changed] == [
        ("payment-35s", "compensated", "completed")
    ]
    # 60 s a try outwaits them all; the deposit, never sent in the
    # recording, is answered as the deposits of the sagas around them were.
    longer = backtest(found, DEFINITIONS, policy(TIMEOUT.format(60_000)), seed=3)
    assert {c.saga_id for c in longer.changed} == {
        "payment-35s", "payment-45s", "payment-70s"
    }  # fmt: skip
    assert longer.candidate.outcomes == {"completed": 43}
    assert longer.baseline.outcomes == {"completed": 40, "compensated": 3}
    # The late successes the baseline dead-letters are answers in time now.
    assert (longer.baseline.dead_letters, longer.candidate.dead_letters) == (3, 0)
    by_id = {b.saga_id: (b, c) for b, c in longer.pairs}
    baseline, candidate = by_id["payment-45s"]
    assert candidate.timeouts == 0 and baseline.timeouts == 3
    # Completed when the answer came (45 s after the payment went out), plus
    # the drawn deposit's 40 ms.
    started = recorded.logs["payment-45s"][0].at
    assert candidate.ended_at == started + 40 + 45_000 + 40


TIMEOUT = "[deposit.steps.process_payment]\ntimeout_ms = {}\n"


def test_a_stream_never_answered_is_answered_as_those_sent_after_it_were() -> None:
    """The payment service frozen for 34 s: payments sent in its first
    seconds were given up on (and, barred by the refund, refused later, which
    nothing records); those sent after were answered at the thaw. A longer
    timeout sees the given-up ones answered at the thaw too."""
    recorded = Frozen()
    for i in range(10):
        recorded.normal(f"ok-{i}")
    thaw = recorded.now + 34_000
    for i in range(8):
        seconds = (thaw - recorded.now - 40) / 1000
        recorded.frozen(f"frozen-{i}", "process_payment", seconds, letter=False)
    found = recordings(recorded.logs, recorded.late, DEFINITIONS)
    given_up = sorted(r.saga_id for r in found if r.status == "compensated")
    assert given_up == ["frozen-0", "frozen-1", "frozen-2"]
    result = backtest(found, DEFINITIONS, policy(TIMEOUT.format(15_000)), seed=2)
    assert result.mismatches == []
    assert result.baseline.dead_letters == 0  # nothing late was recorded
    assert sorted(c.saga_id for c in result.changed) == given_up
    for baseline, candidate in result.pairs:
        if baseline.saga_id in given_up:
            # Answered at the thaw, then the deposit (drawn: 40 ms).
            assert candidate.ended_at == thaw + 40, candidate


def test_a_longer_deposit_timeout_ends_the_retries_the_recorded_answer_outwaits() -> (
    None
):
    """The deposit is the pivot: retried until answered, never compensated.
    A longer timeout leaves the outcome completed and ends the timeouts and
    retries for the sagas whose answer came within it."""
    recorded = Frozen()
    for i in range(20):
        recorded.normal(f"ok-{i}")
    for seconds in (25, 38, 90):
        recorded.frozen(f"deposit-{seconds}s", "deposit", seconds)
    found = recordings(recorded.logs, recorded.late, DEFINITIONS)
    text = "[deposit.steps.deposit]\ntimeout_ms = 40_000\n"
    result = backtest(found, DEFINITIONS, policy(text), seed=5)
    assert result.mismatches == [] and result.changed == []
    by_id = {b.saga_id: (b, c) for b, c in result.pairs}
    for seconds, waited in ((25, True), (38, True), (90, False)):
        baseline, candidate = by_id[f"deposit-{seconds}s"]
        assert baseline.status == candidate.status == "completed"
        assert baseline.timeouts > 0
        assert (candidate.timeouts == 0) is waited, seconds
        assert candidate.ended_at == baseline.ended_at  # answered when it was


def test_draws_are_seeded_and_the_seed_is_the_only_randomness() -> None:
    recorded = frozen_payments()
    found = recordings(recorded.logs, recorded.late, DEFINITIONS)
    text = TIMEOUT.format(60_000)
    one = backtest(found, DEFINITIONS, policy(text), seed=11)
    again = backtest(found, DEFINITIONS, policy(text), seed=11)
    assert one == again


def test_a_window_without_sagas_and_a_log_of_unknown_types_are_refused() -> None:
    recorded = frozen_payments()
    found = recordings(recorded.logs, recorded.late, DEFINITIONS)
    with pytest.raises(BacktestError, match="no saga started in the window"):
        backtest(found, DEFINITIONS, Policy(), seed=1, start=T0 + 10**9)
    with pytest.raises(BacktestError, match=r"type.* deposit, which the definitions"):
        recordings(recorded.logs, recorded.late, {})


@pytest.mark.parametrize(
    ("text", "name", "error"),
    [
        ("[transfer.steps.x]\ntimeout_ms = 1\n", "p.toml", "saga type 'transfer'"),
        ("[deposit.steps.pay]\ntimeout_ms = 1\n", "p.toml", "step\\(s\\) pay of saga"),
        ("[deposit.steps.deposit]\ntimeout = 1\n", "p.toml", "unknown field `timeout`"),
        ('{"deposit": {"steps": {"deposit": {"timeout_ms": 0}}}}', "p.json", ">= 1"),
        ("[deposit.steps.deposit]\ncompensate = true\n", "p.toml", "no compensation"),
        (
            "[deposit.steps.deposit.compensation]\ntimeout_ms = 5\n",
            "p.toml",
            "no compensation to change",
        ),
        ("timeout_ms = [", "p.toml", "not a valid policy"),
        ("{}", "p.yaml", "by its name"),
        ("a = " + "[" * 5_000 + "]" * 5_000, "p.toml", "nested too deeply"),
        ('{"a": ' + "[" * 5_000 + "]" * 5_000 + "}", "p.json", "nesting depth 5001"),
    ],
)
def test_a_policy_that_cannot_apply_is_refused_naming_what(
    text: str, name: str, error: str
) -> None:
    with pytest.raises(PolicyError, match=error):
        Policy.parse(text.encode(), name).applied(DEFINITIONS)


def test_a_policy_changes_every_version_and_only_what_it_names() -> None:
    changed = policy(
        "[deposit.steps.process_payment]\ntimeout_ms = 20000\n"
        "retry = { max_attempts = 5 }\n"
        "[deposit.steps.process_payment.compensation]\ntimeout_ms = 30000\n"
        "[deposit.steps.verify_user]\ncompensate = false\n"
    ).applied(DEFINITIONS)["deposit"]
    step = changed.step("process_payment")
    assert (step.action.timeout_ms, step.action.retry.max_attempts) == (20_000, 5)
    assert step.action.retry.initial_backoff_ms == 500  # kept
    assert step.compensation is not None and step.compensation.timeout_ms == 30_000
    assert changed.step("deposit") == DEFINITIONS["deposit"].step("deposit")
    dropped = policy("[deposit.steps.process_payment]\ncompensate = false\n").applied(
        DEFINITIONS
    )["deposit"]
    assert dropped.step("process_payment").compensation is None
