"""How long a consumer's fetches may wait at the broker for records, paced by
the traffic it sees.

A fetch that finds no records waits at the broker up to ``fetch_max_wait_ms``
for some to arrive. Kafka answers it as soon as records come; the embedded
broker does not: a record produced while a fetch waits there waits the fetch
out (about 54 ms at the default 100, measured; see the README's Latency
section), at every hop of a saga's path.

With ``quick_fetch_wait_ms`` set, a consumer that saw records in the last
``quick_for_ms`` and whose last batch was small (fewer than ``busy_batch``
records) asks for that brief wait instead, so the next record of a
conversation already under way is fetched within it. Two cases keep the long
wait: batches of ``busy_batch`` or more (records are there anyway, and the
long wait lets them batch, which is what throughput at saturation lives on),
and a consumer that saw nothing for ``quick_for_ms`` (idle: a brief wait would
only spin, a fetch every few milliseconds for nothing; the first record after
a lull pays one long wait, the ones after it do not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer

from events.transport.settings import ConsumerSettings


class FetchPace:
    """Sets a consumer's fetch wait after each poll, by the batch it got and
    how recently it got any."""

    __slots__ = ("_busy", "_clock", "_config", "_for_s", "_last", "_long", "_short")

    def __init__(
        self,
        consumer: KafkaConsumer,
        settings: ConsumerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._long = settings.fetch_max_wait_ms
        self._short = settings.quick_fetch_wait_ms
        self._busy = settings.busy_batch
        self._for_s = settings.quick_for_ms / 1000
        self._clock = clock
        self._last = float("-inf")  # when a poll last returned records
        self._config: dict[str, Any] | None = None
        if self._short is not None:
            self._config = fetch_config(consumer)

    def after(self, records: int) -> None:
        """The last poll returned ``records``: the wait for the next fetches."""
        if self._config is None:
            return
        now = self._clock()
        if records:
            self._last = now
        quick = records < self._busy and now - self._last < self._for_s
        self._config["fetch_max_wait_ms"] = self._short if quick else self._long


def fetch_config(consumer: KafkaConsumer) -> dict[str, Any]:
    """The configuration kafka-python's fetcher reads ``fetch_max_wait_ms``
    from as it builds each fetch request (3.0: ``consumer._fetcher.config``).
    Checked, so a kafka-python that moved it fails loudly, not quietly."""
    config = getattr(getattr(consumer, "_fetcher", None), "config", None)
    if not isinstance(config, dict) or "fetch_max_wait_ms" not in config:
        raise RuntimeError(
            "this kafka-python has no consumer._fetcher.config['fetch_max_wait_ms']; "
            "FetchPace needs where it reads the fetch wait from"
        )
    return config
