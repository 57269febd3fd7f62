"""The Prometheus ``/metrics`` endpoint of `saga run` and `saga serve`.

On each scrape the collector asks the actors for their counters (one Ray call
each, in parallel) and Kafka for the consumer lag (cached for a few seconds),
so the numbers are as fresh as the scrape.

Sagas started and ended, and their durations, are counted from the
projection's DuckDB tables (:mod:`projections.counts`): the log's fold in a
file no restart loses, so these counters never go back, and after a run they
equal its summary. They trail the log by the projection's lag. The other
counters are each actor's, labelled with the actor (``actor``: ``host-N``,
``router-N`` or the service's name; not ``instance``, which Prometheus sets to
the scraped target); an actor counts from 0 in each process, and the endpoint
carries each series over its actor's restarts (:mod:`actors.app.monotonic`),
so none goes backwards.

Metric names and labels:

- ``saga_started_total{saga_type}``, ``saga_finished_total{saga_type,outcome}``:
  from the projection
- ``saga_duration_seconds{saga_type,outcome}``: histogram, from a saga's start
  to its outcome, from the projection
- ``saga_in_flight{actor}``: sagas each host holds
- ``saga_step_latency_seconds{step}``: histogram, from the projections
- ``saga_hop_seconds{hop,actor}``: histogram, where a saga's time goes, as each
  actor times its own hops (:data:`events.wire.latency.HOPS`): ``router_poll``
  (a record's Kafka timestamp to the router's poll: wall clocks) and
  ``ray_call`` (the router's call to a host, its round trip); ``host_decide``
  (a batch's decisions), ``log_append`` (a batch's log records to their
  acknowledgement), ``command_publish`` (a command to its acknowledgement);
  ``participant_poll`` (a command's Kafka timestamp to its service's batch),
  ``duckdb_commit`` (the service's handler on a batch), ``reply_publish`` (a
  batch's replies to their acknowledgement). The decide, append, commit and
  reply hops count batches, the others records or calls
- ``saga_messages_consumed_total{topic,actor}``,
  ``saga_messages_produced_total{topic,actor}``
- ``saga_retries_total{kind,actor}``: ``step`` (a command sent again as a new
  attempt) or ``service`` (a participant batch retried)
- ``saga_dead_letters_total{source,actor}``, ``saga_duplicates_total{actor}``
- ``saga_late_replies_total{actor}``: successes for a step a saga had given up
  on in doubt and compensated (each is dead-lettered with the reason too)
- ``saga_service_breaker_open{service}``: 1 while a service's database or disk
  fails and its circuit breaker holds the batch back
- ``saga_log_lost{component}``: 1 once a component stopped because the broker
  lost records it had read (``host-N``, ``router-N``, a service, ``projection``)
- ``saga_consumer_lag{group,topic,partition}``: records behind, from Kafka, for
  every partition each of the platform's groups reads; one that never
  committed there is behind by everything since the log's start
- ``saga_projection_lag_records``, ``saga_projection_lag_seconds``
- ``saga_partition_epoch{partition,host,node}``: each partition's epoch,
  host and Ray node as the engine's controller reports them
  (:class:`~actors.engine.controller.PartitionOwner`; the host of a moving
  partition is the one restoring it)
- ``saga_partition_owned{host}``: partitions each host owns
- ``saga_partitions_moving``: partitions granted to a host that is restoring
  them right now
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Any, Final

import ray
from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from actors.app.monotonic import Monotonic
from actors.engine.controller import PartitionOwner
from actors.engine.router import RouterStats
from actors.engine.stats import HostMetrics
from actors.topology import PROJECTION_GROUP, SAGA_HOST, service_group
from events.service import ServiceStats
from events.transport.admin import PartitionLag, TopicAdmin
from events.transport.settings import KafkaSettings
from events.wire.latency import BUCKETS_S, HistogramCounts
from projections.counts import (
    DURATION_BUCKETS,
    LATENCY_BUCKETS,
    SagaCounts,
    StepLatency,
)

log = logging.getLogger(__name__)

#: Every sample name the endpoint exposes; the Grafana dashboard
#: (``grafana/saga-dashboard.json``) uses only these, and a test holds both
#: to what a real Prometheus scrapes.
SAMPLE_NAMES: Final = frozenset(
    {
        "saga_started_total",
        "saga_finished_total",
        "saga_duration_seconds_bucket",
        "saga_duration_seconds_count",
        "saga_duration_seconds_sum",
        "saga_in_flight",
        "saga_step_latency_seconds_bucket",
        "saga_step_latency_seconds_count",
        "saga_step_latency_seconds_sum",
        "saga_hop_seconds_bucket",
        "saga_hop_seconds_count",
        "saga_hop_seconds_sum",
        "saga_messages_consumed_total",
        "saga_messages_produced_total",
        "saga_retries_total",
        "saga_dead_letters_total",
        "saga_duplicates_total",
        "saga_late_replies_total",
        "saga_service_breaker_open",
        "saga_log_lost",
        "saga_consumer_lag",
        "saga_projection_lag_records",
        "saga_projection_lag_seconds",
        "saga_partition_epoch",
        "saga_partition_owned",
        "saga_partitions_moving",
    }
)

_TIMEOUT_S = 5.0
_LAG_TTL_S = 5.0


class PlatformCollector(Collector):
    def __init__(
        self,
        kafka: KafkaSettings,
        hosts: Sequence[Any],
        routers: Sequence[Any],
        services: dict[str, Any],
        projection: Any,
        groups: Mapping[str, Sequence[str]],
        controller: Any,
    ) -> None:
        self._kafka = kafka
        self._hosts = list(hosts)
        self._routers = list(routers)
        # The engine's controller (Ray restarts it under the same handle).
        self._controller = controller
        self._services = dict(services)
        self._projection = projection
        #: Each consumer group and the topics it reads.
        self._groups = {group: list(topics) for group, topics in groups.items()}
        self._lag: list[PartitionLag] = []
        self._lag_at = 0.0
        self._monotonic = Monotonic()

    def _ask(self, calls: list[Any]) -> list[Any]:
        """Each actor's answer, or ``None`` for one that is restarting."""
        answers: list[Any] = []
        for ref in calls:
            try:
                answers.append(ray.get(ref, timeout=_TIMEOUT_S))
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
                log.info("an actor did not answer the scrape: %s", exc)
                answers.append(None)
        return answers

    def _consumer_lag(self) -> list[PartitionLag]:
        # An empty answer (the topics not there yet) is asked again at the
        # next scrape, not kept for the cache time.
        if not self._lag or time.monotonic() - self._lag_at > _LAG_TTL_S:
            try:
                with TopicAdmin(self._kafka) as admin:
                    self._lag = admin.consumer_lag(self._groups)
                self._lag_at = time.monotonic()
            except Exception as exc:
                log.warning("consumer lag unavailable: %s", exc)
        return self._lag

    def collect(self) -> Iterator[Metric]:
        # In the actors' order, None for one that did not answer: a label
        # names the same actor at every scrape.
        each_host = self._ask([h.metrics.remote() for h in self._hosts])
        each_router = self._ask([r.stats.remote() for r in self._routers])
        hosts = {f"host-{i}": h for i, h in enumerate(each_host) if h}
        routers = {f"router-{i}": r for i, r in enumerate(each_router) if r}
        names = list(self._services)
        answers = self._ask([self._services[n].stats.remote() for n in names])
        services = {n: s for n, s in zip(names, answers, strict=True) if s}
        fatal = self._ask([self._services[n].fatal.remote() for n in names])
        counts, latencies, staleness, fatal_projection, owners = self._ask(
            [
                self._projection.saga_counts.remote(),
                self._projection.step_latencies.remote(),
                self._projection.published_age_s.remote(),
                self._projection.fatal.remote(),
                self._controller.owners.remote(),
            ]
        )
        stopped = {name: h.log_lost for name, h in hosts.items()}
        stopped |= {name: bool(r.fatal) for name, r in routers.items()}
        stopped |= {
            n: bool(f) for n, f in zip(names, fatal, strict=True) if f is not None
        }
        if fatal_projection is not None:
            stopped["projection"] = bool(fatal_projection)
        yield from saga_metrics(counts)
        yield from _host_metrics(hosts, latencies or [])
        # Each actor's own counts start again at 0 when Ray restarts it: the
        # series go on from where they were.
        yield self._monotonic(
            hop_metrics(
                {n: h.hops for n, h in hosts.items()}
                | {n: r.hops for n, r in routers.items()}
                | {n: s.hops for n, s in services.items()}
            )
        )
        yield from map(self._monotonic, _message_metrics(hosts, routers, services))
        yield from map(self._monotonic, _fault_counters(hosts, services))
        yield _breakers(services)
        yield _log_lost(stopped)
        yield from _lag_metrics(self._consumer_lag(), staleness)
        yield from ownership_metrics(owners)


def saga_metrics(counts: SagaCounts | None) -> Iterator[Metric]:
    """Sagas started and ended, and their durations, as the projection counts
    them. Nothing when the projection did not answer (restarting): a gap in
    the graph, not a counter gone to zero."""
    if counts is None:
        return
    started = CounterMetricFamily("saga_started", "Sagas started", labels=["saga_type"])
    for saga_type, n in sorted(counts.started.items()):
        started.add_metric([saga_type], n)
    yield started

    finished = CounterMetricFamily(
        "saga_finished", "Sagas ended, by outcome", labels=["saga_type", "outcome"]
    )
    durations = HistogramMetricFamily(
        "saga_duration_seconds",
        "From a saga's start to its outcome",
        labels=["saga_type", "outcome"],
    )
    for ended in counts.ended:
        labels = [ended.saga_type, ended.outcome]
        finished.add_metric(labels, ended.observations)
        buckets = [
            (f"{bound:g}", n)
            for bound, n in zip(DURATION_BUCKETS, ended.buckets, strict=True)
        ]
        buckets.append(("+Inf", ended.observations))
        durations.add_metric(labels, buckets, sum_value=ended.sum_s)
    yield finished
    yield durations


def _host_metrics(
    hosts: Mapping[str, HostMetrics], latencies: Sequence[StepLatency]
) -> Iterator[Metric]:
    """Sagas in flight per host; each step's latency."""
    in_flight = GaugeMetricFamily(
        "saga_in_flight", "Sagas in flight in each host", labels=["actor"]
    )
    for name, h in hosts.items():
        in_flight.add_metric([name], h.in_flight)
    yield in_flight

    histogram = HistogramMetricFamily(
        "saga_step_latency_seconds",
        "From a command to its answer, per step",
        labels=["step"],
    )
    for step in latencies:
        _add_histogram(histogram, step)
    yield histogram


def hop_metrics(actors: Mapping[str, Mapping[str, HistogramCounts]]) -> Metric:
    """Each actor's histogram of each hop it times."""
    histogram = HistogramMetricFamily(
        "saga_hop_seconds",
        "Where a saga's time goes: each hop of its path, as its actor times it",
        labels=["hop", "actor"],
    )
    for actor, hops in actors.items():
        for hop, counts in hops.items():
            cumulative = list(accumulate(counts.buckets))
            buckets = [
                (f"{bound:g}", n)
                for bound, n in zip(BUCKETS_S, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            histogram.add_metric([hop, actor], buckets, sum_value=counts.sum_s)
    return histogram


def _message_metrics(
    hosts: Mapping[str, HostMetrics],
    routers: Mapping[str, RouterStats],
    services: Mapping[str, ServiceStats],
) -> Iterator[Metric]:
    """Messages consumed and produced per topic and actor; retries."""
    consumed = CounterMetricFamily(
        "saga_messages_consumed", "Messages consumed", labels=["topic", "actor"]
    )
    for actor, per_topic in [
        *((n, r.consumed) for n, r in routers.items()),
        *((n, s.consumed) for n, s in services.items()),
    ]:
        for topic, n in sorted(per_topic.items()):
            consumed.add_metric([topic, actor], n)
    yield consumed

    produced = CounterMetricFamily(
        "saga_messages_produced", "Messages produced", labels=["topic", "actor"]
    )
    for actor, per_topic in [
        *((n, h.produced) for n, h in hosts.items()),
        *((n, s.produced) for n, s in services.items()),
    ]:
        for topic, n in sorted(per_topic.items()):
            produced.add_metric([topic, actor], n)
    yield produced

    retries = CounterMetricFamily("saga_retries", "Retries", labels=["kind", "actor"])
    for name, h in hosts.items():
        retries.add_metric(["step", name], h.retries)
    for name, s in services.items():
        retries.add_metric(["service", name], s.retries)
    yield retries


def _breakers(services: Mapping[str, ServiceStats]) -> Metric:
    breaker = GaugeMetricFamily(
        "saga_service_breaker_open",
        "1 while the service holds batches back: its database or disk fails",
        labels=["service"],
    )
    for name, s in services.items():
        breaker.add_metric([name], int(s.breaker_open))
    return breaker


def _fault_counters(
    hosts: Mapping[str, HostMetrics], services: Mapping[str, ServiceStats]
) -> Iterator[Metric]:
    """Dead letters; the hosts' duplicates and late replies."""
    dead = CounterMetricFamily(
        "saga_dead_letters", "Messages dead-lettered", labels=["source", "actor"]
    )
    for name, h in hosts.items():
        dead.add_metric([SAGA_HOST, name], h.dead_letters)
    for name, s in services.items():
        dead.add_metric([service_group(name), name], s.dead_letters)
    yield dead

    duplicates = CounterMetricFamily(
        "saga_duplicates",
        "Duplicates recognised and dropped by the hosts",
        labels=["actor"],
    )
    late = CounterMetricFamily(
        "saga_late_replies",
        "Successes for a step given up on in doubt and compensated",
        labels=["actor"],
    )
    for name, h in hosts.items():
        duplicates.add_metric([name], h.duplicates)
        late.add_metric([name], h.late_replies)
    yield duplicates
    yield late


def _log_lost(stopped: Mapping[str, bool]) -> Metric:
    gauge = GaugeMetricFamily(
        "saga_log_lost",
        "1 once the component stopped: the broker lost records it had read",
        labels=["component"],
    )
    for component, lost in sorted(stopped.items()):
        gauge.add_metric([component], int(lost))
    return gauge


def _lag_metrics(
    lags: Sequence[PartitionLag], staleness: float | None
) -> Iterator[Metric]:
    """The consumer groups' lag; how far the projections trail."""
    lag = GaugeMetricFamily(
        "saga_consumer_lag",
        "Records behind the end, per consumer group and partition",
        labels=["group", "topic", "partition"],
    )
    for item in lags:
        lag.add_metric([item.group, item.topic, str(item.partition)], item.lag)
    yield lag
    yield GaugeMetricFamily(
        "saga_projection_lag_records",
        "Records of saga.events and saga.dlq not yet in the projections",
        value=sum(i.lag for i in lags if i.group == PROJECTION_GROUP),
    )
    if staleness is not None:
        yield GaugeMetricFamily(
            "saga_projection_lag_seconds",
            "How far the published projections trail what the writer has",
            value=staleness,
        )


def ownership_metrics(owners: Sequence[PartitionOwner] | None) -> Iterator[Metric]:
    """Each partition's epoch, host and node; partitions per host; restores in
    progress. Nothing when the controller did not answer: a gap in the graph,
    not a false zero."""
    if owners is None:
        return
    epoch = GaugeMetricFamily(
        "saga_partition_epoch",
        "The epoch of each partition's owner, with its host and Ray node",
        labels=["partition", "host", "node"],
    )
    owned: Counter[str] = Counter()
    for owner in owners:
        epoch.add_metric([str(owner.partition), owner.host, owner.node], owner.epoch)
        if owner.state == "owned":
            owned[owner.host] += 1
    yield epoch
    per_host = GaugeMetricFamily(
        "saga_partition_owned", "Partitions each host owns", labels=["host"]
    )
    for host, n in sorted(owned.items()):
        per_host.add_metric([host], n)
    yield per_host
    yield GaugeMetricFamily(
        "saga_partitions_moving",
        "Partitions granted to a host that is restoring them",
        value=sum(1 for o in owners if o.state == "moving"),
    )


def _add_histogram(histogram: HistogramMetricFamily, step: StepLatency) -> None:
    buckets = [
        (f"{bound:g}", count)
        for bound, count in zip(LATENCY_BUCKETS, step.buckets, strict=True)
    ]
    buckets.append(("+Inf", step.observations))
    histogram.add_metric([step.step], buckets, sum_value=step.sum_s)


def serve_metrics(port: int, collector: Collector, addr: str = "127.0.0.1") -> None:
    """Expose ``collector`` at ``http://<addr>:<port>/metrics`` (a daemon thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    start_http_server(port, addr=addr, registry=registry)
