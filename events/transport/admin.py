"""Topic provisioning and inspection.

End offsets come from the high watermark that Fetch responses carry, not from
ListOffsets: both real Kafka and the embedded broker report the high watermark
right, while the embedded broker's ListOffsets under-reports (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from events.errors import (
    EventsError,
    LogLostError,
    MissingTopicError,
    TopicConfigError,
    TopicPartitionMismatchError,
)
from events.transport.clients import (
    Closing,
    admin_options,
    connect,
)
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, LogIdentity
from events.wire.topics import KEEP_FOREVER_CONFIGS, KEPT_FOREVER, retention_problems


class ProvisionReport(msgspec.Struct, frozen=True):
    created: tuple[str, ...]
    existing: tuple[str, ...]


class PartitionLag(msgspec.Struct, frozen=True):
    group: str
    topic: str
    partition: int
    #: ``None``: the group never committed on the partition (its lag counts
    #: from the log's start).
    committed: int | None
    end: int
    lag: int


class TopicInfo(msgspec.Struct, frozen=True):
    name: str
    partitions: int
    #: High watermark per partition, in partition order.
    end_offsets: tuple[int, ...]

    @property
    def messages(self) -> int:
        """Sum of end offsets: the number of records ever written (no deletes)."""
        return sum(self.end_offsets)


class TopicAdmin(Closing):
    """Creates, checks and describes topics. Use as a context manager."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._admin = connect(KafkaAdminClient, settings, admin_options(settings))

    def partition_counts(self) -> dict[str, int]:
        """Every topic on the cluster and its partition count.

        Asks for all topics (never by name): a by-name metadata request may
        auto-create the topic on some brokers.
        """
        return {
            topic["name"]: len(topic["partitions"])
            for topic in self._admin.describe_topics()
            if not topic["is_internal"]
        }

    def ensure_topics(
        self, names: Iterable[str], partitions: int | None = None
    ) -> ProvisionReport:
        """Create the missing topics; safe to repeat.

        Raises :class:`TopicPartitionMismatchError` when an existing topic has a
        different partition count, before creating anything.
        """
        wanted = partitions or self._settings.topics.partitions
        names = list(dict.fromkeys(names))
        counts = self.partition_counts()
        self._raise_on_mismatch(names, counts, wanted)
        missing = [name for name in names if name not in counts]
        if missing:
            replication = self._settings.topics.replication_factor
            result = self._admin.create_topics(
                {
                    name: {
                        "num_partitions": wanted,
                        "replication_factor": replication,
                        "configs": KEEP_FOREVER_CONFIGS if name in KEPT_FOREVER else {},
                    }
                    for name in missing
                },
                raise_errors=False,
                wait_for_metadata=True,
            )
            # A concurrent provisioner may have won the race: that is fine as
            # long as its partition count agrees, which the re-check proves.
            for topic in result.get("topics", []):
                if topic["error_code"] not in (0, 36):  # 36: already exists
                    raise EventsError(
                        f"creating topic {topic['name']} failed: "
                        f"{topic['error_message'] or topic['error_code']}"
                    )
            self._raise_on_mismatch(names, self.partition_counts(), wanted)
        self._check_retention(names)
        return ProvisionReport(
            created=tuple(missing),
            existing=tuple(name for name in names if name not in missing),
        )

    def identity(self, names: Iterable[str]) -> LogIdentity:
        """The cluster's id and the ids of ``names`` (asked for as all topics:
        see :meth:`partition_counts`)."""
        wanted = set(names)
        try:
            cluster = self._admin.describe_cluster()
            topics = self._admin.describe_topics()
        except KafkaError as exc:
            raise EventsError(f"describing the cluster failed: {exc}") from exc
        return LogIdentity(
            cluster_id=str(cluster.get("cluster_id") or ""),
            topic_ids={
                t["name"]: str(t.get("topic_id") or "")
                for t in topics
                if t["name"] in wanted
            },
        )

    def check_identity(self, expected: LogIdentity) -> None:
        """Raise :class:`LogLostError` unless the cluster and topics are the
        ones ``expected`` describes."""
        changes = expected.changes(self.identity(expected.topic_ids))
        if changes:
            raise LogLostError("; ".join(changes))

    def check_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        """Raise unless every topic exists with the configured partition count."""
        wanted = partitions or self._settings.topics.partitions
        names = list(names)
        counts = self.partition_counts()
        missing = [name for name in names if name not in counts]
        if missing:
            raise MissingTopicError(missing)
        self._raise_on_mismatch(names, counts, wanted)
        self._check_retention(names)

    def topic_configs(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        """Each topic's configs as the broker reports them (a broker may
        report only some: the embedded one, those a topic was created with)."""
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        if not resources:
            return {}
        try:
            found = self._admin.describe_configs(resources, config_filter="all")
        except KafkaError as exc:
            raise EventsError(f"reading topic configs failed: {exc}") from exc
        return {
            name: {key: str(_value(entry)) for key, entry in configs.items()}
            for name, configs in found.get("topic", {}).items()
        }

    def _check_retention(self, names: list[str]) -> None:
        kept = [name for name in names if name in KEPT_FOREVER]
        problems = [
            problem
            for name, configs in self.topic_configs(kept).items()
            for problem in retention_problems(name, configs)
        ]
        if problems:
            raise TopicConfigError(problems)

    @staticmethod
    def _raise_on_mismatch(
        names: list[str], counts: dict[str, int], wanted: int
    ) -> None:
        mismatches = {
            name: (counts[name], wanted)
            for name in names
            if name in counts and counts[name] != wanted
        }
        if mismatches:
            raise TopicPartitionMismatchError(mismatches)

    def describe(
        self, names: Iterable[str] | None = None, timeout_s: float = 10.0
    ) -> list[TopicInfo]:
        """Partitions and end offsets of the given topics (all when ``None``)."""
        counts = self.partition_counts()
        chosen = sorted(counts) if names is None else list(names)
        missing = [name for name in chosen if name not in counts]
        if missing:
            raise MissingTopicError(missing)
        offsets = end_offsets(
            self._settings,
            [TP(n, p) for n in chosen for p in range(counts[n])],
            timeout_s,
        )
        return [
            TopicInfo(
                name=name,
                partitions=counts[name],
                end_offsets=tuple(offsets[TP(name, p)] for p in range(counts[name])),
            )
            for name in chosen
        ]

    def committed(self, group: str) -> dict[TP, int]:
        """The offsets ``group`` has committed, per partition it committed on."""
        try:
            found = self._admin.list_group_offsets(group).get(group, {})
        except KafkaError as exc:
            raise EventsError(
                f"reading offsets of group {group!r} failed: {exc}"
            ) from exc
        return {TP(*tp): int(meta.offset) for tp, meta in found.items()}

    def consumer_lag(
        self, groups: Mapping[str, Iterable[str]], timeout_s: float = 10.0
    ) -> list[PartitionLag]:
        """Per group, per partition of the topics it reads (``groups`` maps
        each to them) and any other it committed on: its committed offset,
        the end (high watermark) and the lag, read from Kafka itself. A
        partition the group never committed on lags from the log's start: a
        service that never started is the most behind, not absent."""
        counts = self.partition_counts()
        committed = {group: self.committed(group) for group in groups}
        wanted = {
            group: sorted(
                {TP(t, p) for t in topics for p in range(counts.get(t, 0))}
                | set(committed[group])
            )
            for group, topics in groups.items()
        }
        every = sorted({tp for tps in wanted.values() for tp in tps})
        with PartitionReader(self._settings, timeout_s) as reader:
            ends = reader.ends(every)
            never = {
                tp for g, tps in wanted.items() for tp in tps if tp not in committed[g]
            }
            starts = reader.starts(sorted(never))
        lags = []
        for group, tps in wanted.items():
            for tp in tps:
                offset = committed[group].get(tp)
                start = starts.get(tp, 0) if offset is None else offset
                lags.append(
                    PartitionLag(
                        group=group,
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=offset,
                        end=ends[tp],
                        lag=max(0, ends[tp] - start),
                    )
                )
        return lags

    def close(self) -> None:
        self._admin.close()


def end_offsets(
    settings: KafkaSettings, partitions: list[TP], timeout_s: float = 10.0
) -> dict[TP, int]:
    """The high watermark of each partition (see :meth:`PartitionReader.ends`)."""
    with PartitionReader(settings, timeout_s) as reader:
        return reader.ends(partitions)


def _value(entry: object) -> object:
    """A config's value from kafka-python's description of it."""
    if isinstance(entry, dict):
        return entry.get("value", entry.get("config_value"))
    return entry
