"""``saga run --chaos``: a seeded schedule of faults, drawn before the run.

The schedule depends on the seed, the fault kinds asked for and the platform's
shape alone, so a failing run is replayed exactly by its seed. Each fault
strikes once, when its share of the run's sagas has ended (not at a time: a
slow machine meets the same faults at the same points of the run). How each
is struck and proved is :mod:`actors.app.run.strikes`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from actors.core import SagaDefinition
from actors.errors import UsageError

#: Every fault kind, with what it does (``--chaos-faults`` takes these names).
FAULTS: Final = {
    "host-kill": "SIGKILL a saga host; Ray restarts it and it restores from the log",
    "router-kill": "a router SIGKILLs itself after a host acknowledged a batch, "
    "before committing its offsets",
    "participant-kill": "a participant service SIGKILLs itself after its DuckDB "
    "commit, before its replies go out",
    "participant-kill-early": "a participant service SIGKILLs itself after "
    "deciding a batch, before its DuckDB commit",
    "projection-kill": "the projection writer SIGKILLs itself after writing a batch, "
    "before committing its offsets",
    "broker-pause": "SIGSTOP the embedded broker past the consumers' session "
    "timeout, then SIGCONT",
    "duplicates": "publish again start requests, commands and replies already "
    "sent (the replies come stale and out of order)",
    "poison": "publish undecodable records (deep nesting, not JSON, wrong schema, "
    "no key) to the requests, a reply topic and a command topic",
    "service-freeze": "SIGSTOP a participant service past a step's retries, "
    "then SIGCONT",
    "host-pause": "SIGSTOP a saga host past the controller's host timeout, so "
    "its partitions are claimed by another while it sleeps, then SIGCONT: a "
    "zombie owner whose writes every reader must pass over",
    "idempotency-cleanup": "the payment or account service deletes its "
    "idempotency records as if their retention had passed, then its newest "
    "commands come again: late duplicates that must apply nothing",
    "refund-refused": "users close their wallets as their sagas pay, sagas "
    "whose deposits fail: every refund attempt is refused, and each saga "
    "ends failed with a dead letter; then the wallets reopen and the "
    "operator retries each failed saga (saga retry) to its compensation",
}

#: The services whose commands move money: a kill after commit matters there.
_MONEY_SERVICES: Final = ("account", "payment")


class Fault(msgspec.Struct, frozen=True):
    """One fault of the schedule."""

    #: Share of the run's sagas ended when it strikes.
    at: float
    kind: str
    #: What it strikes: ``host 1``, ``router 0``, a service's name, ``broker``...
    target: str
    #: How long a pause or a freeze lasts.
    seconds: float = 0.0
    #: Records copied or poisoned; host acknowledgements before a router dies.
    count: int = 0

    def describe(self) -> str:
        what = {
            "host-kill": f"SIGKILL {self.target}",
            "router-kill": f"{self.target} dies after {self.count} host acks, "
            "before committing",
            "participant-kill": f"{self.target} service dies after its next "
            "DuckDB commit, before replying",
            "participant-kill-early": f"{self.target} service dies before its "
            "next DuckDB commit",
            "projection-kill": "projection dies after its next batch, before "
            "committing",
            "broker-pause": f"broker paused {self.seconds:g} s",
            "duplicates": f"{self.count} start requests, commands and replies "
            "published again",
            "poison": f"{self.count} poison records on requests, replies and commands",
            "service-freeze": f"{self.target} service frozen {self.seconds:g} s",
            "host-pause": f"{self.target} paused {self.seconds:g} s, past the "
            "controller's host timeout",
            "idempotency-cleanup": f"{self.target} service forgets its processed "
            f"commands, then {self.count} of them come again",
            "refund-refused": f"{self.count} users close their wallets as their "
            "sagas pay: the refunds are refused, the sagas fail, then are retried",
        }[self.kind]
        return f"{self.kind:<22} {what}"


def chosen_faults(names: str | None, embedded_broker: bool) -> list[str]:
    """The kinds ``--chaos-faults`` names (the default ones that can run when
    ``None``).

    Pausing the broker needs the embedded one: asked for by name against a
    configured cluster it is a usage error; left out of "all" quietly."""
    if names is None:
        kinds = list(FAULTS)
        return kinds if embedded_broker else [k for k in kinds if k != "broker-pause"]
    kinds = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown or not kinds:
        raise UsageError(
            f"--chaos-faults: unknown {', '.join(unknown) or 'empty list'}; "
            f"choose from {', '.join(FAULTS)}"
        )
    if "broker-pause" in kinds and not embedded_broker:
        raise UsageError(
            "--chaos-faults broker-pause needs the embedded broker (the run "
            "cannot pause a configured cluster); leave it out"
        )
    return list(dict.fromkeys(kinds))


def schedule(
    seed: int,
    kinds: Sequence[str],
    *,
    hosts: int,
    routers: int,
    services: Sequence[str],
    session_timeout_s: float,
    step_budget_s: Mapping[str, float],
    host_timeout_s: float,
) -> list[Fault]:
    """Each kind once, at its own point of the run, in the order they strike.

    A pause outlasts the consumers' session timeout; a freeze outlasts the
    frozen service's longest step retries (``step_budget_s``), so sagas really
    time out on it and go in doubt; a host's pause outlasts the controller's
    ``host_timeout_s``, so its partitions move while it sleeps."""
    rng = random.Random(f"chaos-{seed}")
    # Spread over the run, early enough that the work they hit is still there.
    points = sorted(rng.uniform(0.05, 0.6) for _ in kinds)
    order = list(kinds)
    rng.shuffle(order)
    faults = []
    for at, kind in zip(points, order, strict=True):
        money = [s for s in services if s in _MONEY_SERVICES] or list(services)
        match kind:
            case "host-kill":
                fault = Fault(round(at, 3), kind, f"host {rng.randrange(hosts)}")
            case "router-kill":
                target = f"router {rng.randrange(routers)}"
                fault = Fault(round(at, 3), kind, target, count=rng.randint(1, 5))
            case "participant-kill" | "participant-kill-early":
                fault = Fault(round(at, 3), kind, rng.choice(sorted(money)))
            case "projection-kill":
                fault = Fault(round(at, 3), kind, "projection")
            case "broker-pause":
                seconds = round(session_timeout_s + rng.uniform(2, 5), 1)
                fault = Fault(round(at, 3), kind, "broker", seconds=seconds)
            case "duplicates":
                fault = Fault(round(at, 3), kind, "topics", count=rng.randint(20, 60))
            case "poison":
                fault = Fault(round(at, 3), kind, "topics", count=4)
            case "service-freeze":
                service = rng.choice(sorted(money))
                seconds = round(step_budget_s[service] + rng.uniform(3, 8), 1)
                fault = Fault(round(at, 3), kind, service, seconds=seconds)
            case "idempotency-cleanup":
                service = rng.choice(sorted(money))
                fault = Fault(round(at, 3), kind, service, count=rng.randint(20, 60))
            case "refund-refused":
                fault = Fault(round(at, 3), kind, "payment", count=rng.randint(2, 4))
            case "host-pause":
                # The controller notices a silent host between one and two
                # polling rounds after its timeout, then grants and restores:
                # the pause outlasts all of it, or nothing moves meanwhile.
                seconds = round(host_timeout_s + rng.uniform(8, 12), 1)
                target = f"host {rng.randrange(hosts)}"
                fault = Fault(round(at, 3), kind, target, seconds=seconds)
            case _:
                raise UsageError(f"unknown fault kind {kind!r}")
        faults.append(fault)
    return faults


def step_budgets(definitions: Mapping[str, SagaDefinition]) -> dict[str, float]:
    """Per service, the longest a step of any definition waits for it before
    giving up: every attempt's timeout and the longest backoffs between."""
    budgets: dict[str, float] = {}
    for definition in definitions.values():
        for step in definition.steps:
            for action in filter(None, (step.action, step.compensation)):
                retry = action.retry
                waits = sum(
                    retry.backoff_ms(attempt, 0.999)
                    for attempt in range(1, retry.max_attempts)
                )
                total = (retry.max_attempts * action.timeout_ms + waits) / 1000
                budgets[action.service] = max(budgets.get(action.service, 0), total)
    return budgets
