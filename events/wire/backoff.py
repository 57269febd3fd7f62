"""Exponential backoff with jitter: one shape and one formula for saga steps
(``actors.core.RetryPolicy``) and participant services
(``events.service.RetrySettings``), which subclass :class:`Backoff` with their
own defaults and bounds."""

from __future__ import annotations

import math
from typing import Annotated

import msgspec


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Up to ``max_attempts`` tries, waiting ``initial_backoff_ms`` times
    ``multiplier`` per attempt (at most ``max_backoff_ms``) between them, less
    a random share of up to ``jitter`` of each wait."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    initial_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 500
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    max_backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000
    #: The share of each backoff that is random: 0.2 means 80%..100% of it.
    jitter: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.2

    def wait_ms(self, attempt: int, draw: float) -> float:
        """The wait after attempt ``attempt``; ``draw`` is in [0, 1)."""
        return backoff_ms(
            attempt,
            self.initial_backoff_ms,
            self.multiplier,
            self.max_backoff_ms,
            self.jitter,
            draw,
        )


def backoff_ms(
    attempt: int,
    initial_ms: float,
    multiplier: float,
    cap_ms: float,
    jitter: float,
    draw: float,
) -> float:
    """The wait after attempt ``attempt`` (1-based): ``initial * multiplier**(n-1)``
    capped at ``cap_ms``, less up to the ``jitter`` share of it (``draw`` is a
    random number in [0, 1) from the caller, so callers stay deterministic).

    The exponent is capped before the power is taken: a step retried until it
    is answered reaches attempt numbers where ``multiplier**n`` overflows."""
    if initial_ms <= 0:
        return 0.0  # no wait grows from none (and 0 * multiplier**n can overflow)
    exponent = attempt - 1
    if multiplier > 1.0:
        # The exponent past which the cap applies anyway, plus one for rounding.
        reach = math.log(max(cap_ms / initial_ms, 1.0)) / math.log(multiplier)
        exponent = min(exponent, math.ceil(reach) + 1)
    base = min(initial_ms * multiplier**exponent, cap_ms)
    return base * (1.0 - jitter * draw)
