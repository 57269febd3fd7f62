"""``saga run --chaos``: a saga host and a participant service SIGKILLed, once
each, while the requests go out; Ray restarts them."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

import ray


class Chaos:
    """Kills a SagaHost and a participant, once each, at random moments while
    the requests go out (so sagas are surely in flight)."""

    def __init__(
        self,
        rng: random.Random,
        hosts: list[Any],
        participants: dict[str, Any],
        say: Callable[[str], None],
    ) -> None:
        self.log: list[str] = []
        self._say = say
        name = rng.choice(sorted(participants))
        self._plan = [
            (rng.uniform(0.2, 0.6), "saga host", rng.choice(hosts)),
            (rng.uniform(0.3, 0.8), f"{name} service", participants[name]),
        ]

    def tick(self, submitted: float) -> None:
        for item in [p for p in self._plan if p[0] <= submitted]:
            self._plan.remove(item)
            _, name, actor = item
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            note = f"killed the {name} (pid {pid}) with {submitted:.0%} of sagas sent"
            self.log.append(note)
            self._say(note)
