"""Connecting to Ray, and waiting on actors: what every runtime module shares."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray._private import services

from actors.errors import ConfigError, RayUnreachableError, SagaError
from actors.runtime.settings import RaySettings


def ensure_ray(settings: RaySettings, *, quiet: bool = False) -> dict[str, Any]:
    """Connect to the configured Ray cluster, or start a small local one.

    ``quiet`` keeps the actors' logs off this process's stdout (they stay in
    Ray's session logs). Returns Ray's address information (its
    ``session_dir`` among it); empty when Ray was running already.
    """
    if ray.is_initialized():
        return {}
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": not quiet,
        "namespace": settings.namespace,
    }
    # RAY_ADDRESS stands in for an unset ray.address, as it does for ray.init
    # (a Ray Job's entrypoint has it set to the job's cluster).
    address, origin = settings.address, "ray.address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, origin = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address and address != "local":
        _wait_for_cluster(address, origin, settings.connect_timeout_s)
        context = ray.init(address=address, **options)
    else:
        # "local", not None: ray.init with no address joins the cluster named
        # in /tmp/ray/ray_current_cluster (written by the last `ray start` or
        # test cluster on this machine, and left behind when that was killed),
        # then refuses num_cpus. No address means a Ray of this command's own.
        context = ray.init(address="local", num_cpus=settings.num_cpus, **options)
    # Annotated as the base class, ray.init returns a RayContext (not a Ray
    # Client context: _wait_for_cluster refuses ray:// addresses).
    info: dict[str, Any] = context.address_info  # type: ignore[attr-defined]
    return info


def _wait_for_cluster(address: str, origin: str, timeout_s: float) -> None:
    """Wait until the cluster at ``address`` takes a connection, or raise.

    ray.init retries an address where nothing listens for many minutes,
    printing only its own warnings; the operator gets one error instead. The
    address is resolved as ray.init resolves it ("auto" is RAY_ADDRESS, else
    the last cluster started on this machine, else any running here).
    """
    named = f"{origin} {address!r}"
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        named = f"{named} (RAY_ADDRESS {os.environ['RAY_ADDRESS']!r})"
        address = os.environ["RAY_ADDRESS"]
    if "://" in address:
        # ray:// is Ray Client, whose context has no session of this
        # process's own to keep logs in; http:// is the dashboard, for jobs.
        raise ConfigError(
            f"{named} is a Ray Client or dashboard address: the platform joins "
            "a cluster from one of its nodes, by the head's host:port (its GCS "
            "port, 6379 unless changed) or `auto`. From outside the cluster, "
            "submit the command as a Ray Job (`ray job submit`)."
        )
    try:
        target = services.canonicalize_bootstrap_address(address)
    except ConnectionError as error:
        raise RayUnreachableError(
            f"no Ray cluster found for {named}: RAY_ADDRESS is not set and no "
            "Ray runs on this machine. Pass --ray-address HOST:PORT (the "
            "head's), or run the command on a node of the cluster."
        ) from error
    except ValueError as error:
        raise ConfigError(f"{named} is not a Ray address: {error}") from error
    # Only no address or "local" resolve to none, and neither comes here.
    assert target is not None, address
    # host:port, an IPv6 host in brackets ([::1]:6379), as Ray writes them.
    host, _, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), max(remaining, 0.1)):
                return
        except OSError as error:
            if time.monotonic() + 0.5 > deadline:
                raise RayUnreachableError(
                    f"no Ray cluster answered at {target} ({named}) within "
                    f"{timeout_s:g} s: {error}. Check the address and that the "
                    f"cluster's head is up (`ray status --address {target}`)."
                ) from error
        time.sleep(0.5)


@contextlib.contextmanager
def platform_ray(settings: RaySettings, log_file: Path) -> Iterator[Path | None]:
    """Ray for a command that runs the platform, with the console left to it.

    When this process has no Ray yet, it connects or starts one, and until
    leaving (when it shuts that Ray down, so no Ray process of ours outlives
    the command):

    - Ray's own log (its ``ray`` logger: the token-authentication notice among
      its warnings) and the notices its threads print on stdout (a worker that
      died, as chaos makes them) go to ``log_file``, not the console: the
      command prints on stdout only what it means to, to the stream that was
      ``sys.stdout`` when it entered;
    - the actors' output stays in Ray's session logs (``log_to_driver`` off),
      the directory yielded;
    - the process keeps its SIGTERM handler: ``ray.init`` puts in one that
      exits wherever the process happens to be, and a supervisor's stop must
      stop the platform in order, like Ctrl-C.

    A Ray that was running already (a test's) is used as it is, and yields
    ``None``.
    """
    if ray.is_initialized():
        yield None
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    ray_logger = logging.getLogger("ray")
    handlers = list(ray_logger.handlers)
    with open(log_file, "a", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        ray_logger.handlers = [handler]
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            with contextlib.redirect_stdout(log):
                try:
                    info = ensure_ray(settings, quiet=True)
                finally:
                    main = threading.current_thread() is threading.main_thread()
                    if main and sigterm is not None:
                        signal.signal(signal.SIGTERM, sigterm)
                try:
                    yield Path(info["session_dir"], "logs")
                finally:
                    # Ray's threads print until it stops: only then is the
                    # file closed and stdout given back.
                    ray.shutdown()
        finally:
            ray_logger.handlers = handlers


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SagaError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)
