"""``saga bench``: the platform's latency, measured on the machine it runs on.

It starts the whole platform as ``saga serve`` does (an embedded broker of its
own, Ray, the engine with every saga event logged and projected, the demo
services on DuckDB in a temporary directory), then:

1. **single saga**: sagas one at a time (a closed loop, one in flight), each
   timed from the client's send to its outcome's record in ``saga.events``
   (:mod:`~actors.app.bench.load`);
2. **offered load**: sagas sent at fixed rates (an open loop), the same timing;
3. **saturation**: as many sagas as the platform ends, a window of them in
   flight: its throughput;
4. **breakdown**: where the single sagas' time went, hop by hop
   (:mod:`~actors.app.bench.breakdown`);
5. **restore and memory**: once the platform stopped, on its broker, a host
   driven in-process restores in-flight sagas from a snapshot and a log tail,
   and the memory each in-flight saga takes in it is counted
   (:mod:`~actors.app.bench.restore`);
6. **ceiling**: the same three steps as bare kafka-python loops, on a broker
   of their own, once the platform stopped (:mod:`events.transport.ceiling`):
   the platform's throughput as a share of it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from actors.app.bench.breakdown import breakdown
from actors.app.bench.cpu import CpuMeter, per_saga, projection_settled
from actors.app.bench.load import (
    Ends,
    Timed,
    all_partitions,
    closed_loop,
    offered,
    percentiles,
    saturated,
)
from actors.app.bench.restore import restore_and_memory
from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.app.platform import kafka_for, running_platform
from actors.participants import seed_demo
from events.transport.broker import EmbeddedBroker
from events.transport.ceiling import ceiling


class BenchOptions(msgspec.Struct, frozen=True, kw_only=True):
    #: Sagas run one at a time for the single-saga latency.
    single: int = 500
    #: The offered loads, sagas a second, each for ``seconds``.
    rates: tuple[float, ...] = (100.0, 500.0, 1_000.0, 2_000.0)
    seconds: float = 10.0
    #: Sagas for the throughput at saturation, and for the ceiling.
    saturation: int = 20_000
    #: In-flight sagas for the restore and the memory per saga.
    restore: int = 10_000

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(
            single=200,
            rates=(100.0, 500.0),
            seconds=5.0,
            saturation=3_000,
            restore=5_000,
        )


def bench(
    config: SagaConfig, options: BenchOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    """Run the measurements; the report as JSON-ready data."""
    # Its own broker, always: the figures are the platform's, not a shared
    # cluster's, and the log holds nothing but the benchmark's sagas.
    config = msgspec.structs.replace(
        config, kafka=msgspec.structs.replace(config.kafka, bootstrap_servers=())
    )

    broker_pids: tuple[int, ...] = ()

    def announce(broker: EmbeddedBroker) -> None:
        nonlocal broker_pids
        broker_pids = broker.pids
        say(f"embedded broker at {broker.bootstrap}")

    with (
        tempfile.TemporaryDirectory(prefix="saga-bench-") as scratch,
        kafka_for(config, announce, create_topics=True) as kafka,
    ):
        data_dir = Path(scratch)
        seed_demo(data_dir)
        with running_platform(
            config, kafka, data_dir, services=True, say=say
        ) as platform:
            platform.wait_ready(say)
            partitions = kafka.topics.partitions
            ends = Ends(kafka, all_partitions(partitions))
            try:
                with SagaClient(kafka) as client:
                    meter = CpuMeter(platform, broker_pids)
                    report = _measure(client, ends, meter, options, say)
            finally:
                ends.close()
            say("breaking the single sagas' time down")
            report["breakdown"] = breakdown(kafka, report.pop("_single"), partitions)
        # The platform stopped, its log stays: a host of every partition now
        # has no other claimant, and its restore reads past the bench's sagas
        # (all ended) only in the snapshot's finished ids.
        say(f"restore and memory: {options.restore:,} in-flight sagas in a host")
        report.update(restore_and_memory(kafka, options.restore))
    say(f"the bare ceiling: {options.saturation:,} sagas as kafka-python loops")
    top = round(ceiling(options.saturation), 1)
    achieved = report["saturation"]["achieved_per_s"]
    report["ceiling"] = {
        "sagas": options.saturation,
        "sagas_per_s": top,
        # Of the two figures as printed beside it, so that a reader dividing
        # them gets the same ratio.
        "ratio": None if achieved is None or not top else round(achieved / top, 3),
    }
    report["settings"] = {
        "linger_ms": config.kafka.producer.linger_ms,
        "fetch_max_wait_ms": config.kafka.consumer.fetch_max_wait_ms,
        "embedded_long_poll": config.kafka.embedded_long_poll,
        "poll_timeout_ms": config.kafka.consumer.poll_timeout_ms,
        "partitions": config.kafka.topics.partitions,
        "hosts": config.engine.hosts,
        "routers": config.engine.routers,
    }
    return report


def _measure(
    client: SagaClient,
    ends: Ends,
    meter: CpuMeter,
    options: BenchOptions,
    say: Callable[[str], None],
) -> dict[str, Any]:
    say("warming up: 50 sagas")
    closed_loop(client, ends, 50, "warm")
    say(f"single saga: {options.single} sagas, one at a time")
    single = closed_loop(client, ends, options.single, "single")
    loads = []
    for rate in options.rates:
        say(f"offered load: {rate:,.0f} sagas/s for {options.seconds:g} s")
        begun = time.monotonic()
        timed = offered(client, ends, rate, options.seconds, f"load{rate:g}")
        row = _rate_row(timed, ends, time.monotonic() - begun)
        loads.append({"offered_per_s": rate, **row})
    say(f"saturation: {options.saturation:,} sagas, 2,000 in flight at most")
    projection_settled(meter.projection)
    spent = meter.read()
    begun = time.monotonic()
    timed = saturated(client, ends, options.saturation, "saturation")
    flat_out = _rate_row(timed, ends, time.monotonic() - begun)
    settled = projection_settled(meter.projection)
    flat_out["cpu"] = per_saga(spent, meter.read(), len(timed.sent), settled - begun)
    return {
        "single": {"sagas": len(single.sent), **_summary(single, ends)},
        "loads": loads,
        "saturation": flat_out,
        "_single": list(single.sent),
    }


def _summary(timed: Timed, ends: Ends) -> dict[str, Any]:
    return {
        **percentiles(timed.latencies(ends)),
        "unfinished": len(timed.unfinished),
    }


def _rate_row(timed: Timed, ends: Ends, elapsed_s: float) -> dict[str, Any]:
    """Sagas sent, the rate they ended at (first send to last end), their
    latencies."""
    ended = [ends.at[s] for s in timed.sent if s in ends.at]
    span_s = (max(ended) - min(timed.sent.values())) / 1000 if ended else 0.0
    return {
        "sagas": len(timed.sent),
        "achieved_per_s": round(len(ended) / span_s, 1) if span_s else None,
        "elapsed_s": round(elapsed_s, 1),
        **_summary(timed, ends),
    }
