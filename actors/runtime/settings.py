"""Where Ray runs: the runtime's part of the one configuration.

Apart from :mod:`actors.runtime.ray` so that reading the configuration (every
``saga`` command does) never imports Ray itself.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class RaySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where Ray runs. No address (and no ``RAY_ADDRESS``): a local Ray started
    on demand."""

    #: The cluster to join: the head's host:port, or ``auto``.
    address: str | None = None
    #: The CPUs of a local Ray (a cluster's nodes say their own).
    num_cpus: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: How long a command waits for something to listen at ``address``
    #: before it stops with an error (Ray itself would retry for minutes).
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: The Ray namespace the platform's named actors live in: ``saga scale``
    #: and a restarted ``saga serve`` find a named engine there.
    namespace: str = "saga"
