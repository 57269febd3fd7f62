"""Exponential backoff with jitter: one formula for saga steps and services."""

from __future__ import annotations

import math


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
    exponent = attempt - 1
    if multiplier > 1.0 and initial_ms > 0:
        # The exponent past which the cap applies anyway, plus one for rounding.
        reach = math.log(max(cap_ms / initial_ms, 1.0)) / math.log(multiplier)
        exponent = min(exponent, math.ceil(reach) + 1)
    base = min(initial_ms * multiplier**exponent, cap_ms)
    return base * (1.0 - jitter * draw)
