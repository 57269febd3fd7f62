"""Connecting to Ray, and waiting on actors: what every runtime module shares."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.errors import SagaError
from actors.runtime.settings import RaySettings


def ensure_ray(settings: RaySettings, *, quiet: bool = False) -> None:
    """Connect to the configured Ray cluster, or start a small local one.

    ``quiet`` keeps the actors' logs (and Ray's notices of the processes that
    chaos kills) off this process's stdout, for output that must be only JSON.
    """
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": not quiet,
        "namespace": settings.namespace,
    }
    if settings.address:
        ray.init(address=settings.address, **options)
    else:
        ray.init(num_cpus=settings.num_cpus, **options)


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SagaError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)
