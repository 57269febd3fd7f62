"""What every strike of ``saga run --chaos`` shares: the proof it fired, and
calling an actor that an earlier fault may have just killed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import ray
from ray.exceptions import RayError


class Proof(msgspec.Struct, frozen=True):
    fault: str
    fired: bool
    note: str


def patiently(call: Callable[[], Any], patience_s: float = 120.0) -> Any:
    """The answer to an actor's ``call`` (a function making the Ray call),
    waiting out a restart: an earlier fault may have just killed the actor,
    and Ray answers "temporarily unavailable" meanwhile."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return ray.get(call(), timeout=patience_s)
        except RayError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
