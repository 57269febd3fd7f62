"""Exponential backoff with jitter: one formula for saga steps and services."""

from __future__ import annotations


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
    random number in [0, 1) from the caller, so callers stay deterministic)."""
    base = min(initial_ms * multiplier ** (attempt - 1), cap_ms)
    return base * (1.0 - jitter * draw)
