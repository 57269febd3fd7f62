"""How long a consumer's fetches may wait at the broker for records, paced by
the traffic it sees.

A fetch that finds no records waits at the broker up to ``fetch_max_wait_ms``
for some to arrive. Kafka answers it as soon as records come; the embedded
broker does not: a record produced while a fetch waits there waits the fetch
out (about 54 ms at the default 100, measured; see the README's Latency
section). With ``idle_fetch_wait_ms`` set, a consumer whose last batch was
small (fewer than ``busy_batch`` records: idle, or a trickle) asks for that
brief wait instead, so a record that arrives is fetched within it; batches of
``busy_batch`` or more bring the long wait back, where records are there
anyway and the long wait lets them batch.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer

from events.transport.settings import ConsumerSettings


class FetchPace:
    """Sets a consumer's fetch wait after each poll, by the batch it got."""

    __slots__ = ("_busy", "_config", "_long", "_short")

    def __init__(self, consumer: KafkaConsumer, settings: ConsumerSettings) -> None:
        self._long = settings.fetch_max_wait_ms
        self._short = settings.idle_fetch_wait_ms
        self._busy = settings.busy_batch
        self._config: dict[str, Any] | None = None
        if self._short is not None:
            self._config = fetch_config(consumer)
            self._config["fetch_max_wait_ms"] = self._short

    def after(self, records: int) -> None:
        """The last poll returned ``records``: the wait for the next fetches."""
        if self._config is not None:
            busy = records >= self._busy
            self._config["fetch_max_wait_ms"] = self._long if busy else self._short


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
