"""Where one saga's time goes, hop by hop, from timestamps the platform already
writes: each record's Kafka timestamp (when its producer was handed it), each
log record's decision time (``at``), and each reply's ``timestamp`` (when the
participant's batch began, after its poll).

For every step of a saga, the hops are:

- ``router + Ray call``: its input on Kafka (the start request, or the
  previous step's reply) to the host's decision;
- ``decide + log send``: the decision to its record handed to the producer;
- ``log ack + command send``: that record to the step's command handed to
  the producer (the host sends commands only once the log acknowledged);
- ``participant poll``: the command on Kafka to the participant's batch start;
- ``participant apply + commit``: its batch start (rules, DuckDB commit) to
  the reply handed to the producer;

and, after the last step, the reply to the outcome's decision and its record.
The breakdown sums each kind of hop over a saga's steps; the figures are
medians over the sagas measured (milliseconds, at the clock's 1 ms grain).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from actors.core import Fence, LogRecord, StepCommanded
from events.transport.reader import read_to_end
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Record
from events.wire.messages import CommandMessage, EventMessage, MessageCodec
from events.wire.topics import COMMAND_TOPICS, EVENT_TOPICS, SAGA_EVENTS, SAGA_REQUESTS

#: The hops, in the order a step goes through them.
HOPS = (
    "router + Ray call",
    "decide + log send",
    "log ack + command send",
    "participant poll",
    "participant apply + commit",
)


def breakdown(
    kafka: KafkaSettings, saga_ids: Iterable[str], partitions: int
) -> dict[str, float]:
    """The median ms of each hop (summed over a saga's steps), and ``total``:
    the median of the sagas' request-to-outcome times."""
    wanted = set(saga_ids)
    records = list(
        read_to_end(
            kafka,
            {
                TP(topic, p): 0
                for topic in (
                    SAGA_REQUESTS,
                    SAGA_EVENTS,
                    *COMMAND_TOPICS,
                    *EVENT_TOPICS,
                )
                for p in range(partitions)
            },
        )
    )
    sagas = _by_saga(records, wanted)
    per_hop: dict[str, list[float]] = defaultdict(list)
    totals = []
    for trace in sagas.values():
        hops = trace.hops()
        if hops is None:
            continue
        for name, ms in hops.items():
            per_hop[name].append(ms)
        totals.append(trace.total())
    report = {name: round(statistics.median(per_hop[name]), 1) for name in HOPS}
    report["total"] = round(statistics.median(totals), 1) if totals else 0.0
    report["sagas"] = len(totals)
    return report


class SagaTrace:
    """One saga's records: its request, log records, commands and replies."""

    def __init__(self) -> None:
        self.request = 0
        self.log: list[tuple[LogRecord, int]] = []
        self.commands: dict[str, int] = {}  # messageId -> Kafka timestamp
        #: commandId -> (participant batch start, Kafka timestamp)
        self.replies: dict[str, tuple[float, int]] = {}

    def hops(self) -> dict[str, float] | None:
        """The hops summed over the steps; ``None`` if a record is missing."""
        sums = dict.fromkeys(HOPS, 0.0)
        arrived = float(self.request)
        for record, logged in sorted(self.log, key=lambda x: x[0].seq):
            sums["router + Ray call"] += record.at - arrived
            sums["decide + log send"] += logged - record.at
            command = next(
                (e for e in record.events if isinstance(e, StepCommanded)), None
            )
            if command is None:
                continue  # the outcome: nothing sent after it
            sent = self.commands.get(command.message_id)
            reply = self.replies.get(command.message_id)
            if sent is None or reply is None:
                return None
            began, replied = reply
            sums["log ack + command send"] += sent - logged
            sums["participant poll"] += began - sent
            sums["participant apply + commit"] += replied - began
            arrived = replied
        return sums

    def total(self) -> float:
        return float(max(logged for _, logged in self.log) - self.request)


def _by_saga(records: list[Record], wanted: set[str]) -> dict[str, SagaTrace]:
    codec = MessageCodec()
    fence = Fence()
    traces: dict[str, SagaTrace] = defaultdict(SagaTrace)
    for raw in records:
        if raw.topic == SAGA_EVENTS:
            record = fence.read(raw.partition, raw.value)
            if record is not None and record.saga_id in wanted:
                traces[record.saga_id].log.append((record, raw.timestamp))
            continue
        message = codec.decode(raw.value)
        if message.saga_id not in wanted:
            continue
        trace = traces[message.saga_id]
        if raw.topic == SAGA_REQUESTS:
            trace.request = raw.timestamp
        elif isinstance(message, CommandMessage):
            trace.commands[message.message_id] = raw.timestamp
        elif isinstance(message, EventMessage) and message.command_id:
            began = message.timestamp.timestamp() * 1000
            trace.replies[message.command_id] = (began, raw.timestamp)
    return {s: t for s, t in traces.items() if t.request and t.log}
