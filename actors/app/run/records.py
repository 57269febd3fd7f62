"""The chaos strikes that publish records: duplicates, an idempotency cleanup
followed by late duplicates, and poison. Each is a :class:`Publication`: the
work (reading and sending records, which takes seconds, so :class:`Chaos`
runs it beside the run, and the next fault strikes on time), and the proof,
read once the work is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from actors.app.chaos import Fault
from actors.app.client import SagaClient
from actors.app.run.proof import Proof, patiently
from actors.app.run.workload import Request
from events.errors import MessageDecodeError
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Ack, Outgoing
from events.wire.dead_letters import DeadLetterCodec
from events.wire.topics import SAGA_DLQ, SAGA_REQUESTS

#: Records no decoder takes: too deep, not JSON, the wrong shape, and no key.
POISON: Final = (
    (b"chaos-deep", b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    (b"chaos-not-json", b"\xff\xfe not json"),
    (b"chaos-schema", b'{"type":"command","messageId":7}'),
    (None, b'{"sagaId": ""}'),
)
#: Where poison goes: the routers' two inputs and a service's.
_POISONED: Final = (SAGA_REQUESTS, "payment.events.process", "account.commands.deposit")
#: The command topic of each money service.
_COMMANDS: Final = {
    "payment": "payment.commands.process",
    "account": "account.commands.deposit",
}
#: Where copies of commands come from: the commands that move money.
_COPIED: Final = tuple(_COMMANDS.values())
#: Where copies of replies come from: their answers, which come again stale
#: (the saga moved on, or ended) and out of their order.
_REPLIED: Final = ("payment.events.process", "account.events.deposit")


class Publication(NamedTuple):
    work: Callable[[], None]
    prove: Callable[[], Proof]


def duplicates(
    fault: Fault, kafka: KafkaSettings, requests: Sequence[Request]
) -> Publication:
    """Start requests sent already, and the newest commands of the money
    services and their replies, published again as they were."""
    starts = list(requests[: fault.count])
    sent: dict[str, list[Ack]] = {}

    def work() -> None:
        with SagaClient(kafka) as client:
            client.start_many(starts)
        commands, replies = newest(kafka, [_COPIED, _REPLIED], fault.count)
        with KafkaMessagePublisher(kafka) as publisher:
            sent["commands"] = publisher.send_all(commands)
            sent["replies"] = publisher.send_all(replies)

    def prove() -> Proof:
        acks, answers = sent.get("commands", []), sent.get("replies", [])
        note = (
            f"{len(starts)} start requests, {len(acks)} commands and "
            f"{len(answers)} replies published again, acknowledged (commands "
            f"at {where(acks)}; replies at {where(answers)})"
        )
        return Proof(fault.kind, bool(starts and acks and answers), note)

    return Publication(work, prove)


def idempotency_cleanup(
    fault: Fault, kafka: KafkaSettings, service: Any
) -> Publication:
    """The service forgets every processed command it may (the refusals it
    keeps stay), then its newest commands are published again."""
    done: dict[str, Any] = {}

    def work() -> None:
        # An earlier fault may have just killed it: Ray restarts it meanwhile.
        done["removed"] = patiently(lambda: service.forget_processed.remote(0))
        [commands] = newest(kafka, [[_COMMANDS[fault.target]]], fault.count)
        with KafkaMessagePublisher(kafka) as publisher:
            done["acks"] = publisher.send_all(commands)

    def prove() -> Proof:
        removed, acks = done.get("removed", 0), done.get("acks", [])
        note = (
            f"{fault.target}: {removed} idempotency records deleted, then "
            f"{len(acks)} of its commands published again, acknowledged "
            f"({where(acks)})"
        )
        return Proof(fault.kind, removed > 0 and bool(acks), note)

    return Publication(work, prove)


def poison(
    fault: Fault, kafka: KafkaSettings, dlq_from: Mapping[TP, int]
) -> Publication:
    """Undecodable records on the requests, a reply topic and a command
    topic; each must end as a dead letter with its reason."""
    records = [
        Outgoing(topic, None if key is None else key.decode(), value, partition=0)
        for topic in _POISONED
        for key, value in POISON[: fault.count]
    ]
    acks: list[Ack] = []

    def work() -> None:
        with KafkaMessagePublisher(kafka) as publisher:
            acks.extend(publisher.send_all(records))

    def prove() -> Proof:
        wanted = {(a.topic, a.partition, a.offset) for a in acks}
        found = dead_lettered(kafka, dlq_from, wanted)
        return Proof(
            fault.kind,
            bool(wanted) and found == wanted,
            f"{len(found)} of {len(wanted)} poison records dead-lettered "
            f"with their reason ({where(acks)})",
        )

    return Publication(work, prove)


def newest(
    kafka: KafkaSettings, groups: Sequence[Sequence[str]], count: int
) -> list[list[Outgoing]]:
    """Per group of topics, up to ``count`` of its newest records, as they
    were; read with one reader."""
    found: list[list[Outgoing]] = []
    with PartitionReader(kafka) as reader:
        for topics in groups:
            tps = [TP(t, p) for t in topics for p in range(kafka.topics.partitions)]
            ends = reader.ends(tps)
            share = max(1, count // len(tps) + 1)
            starts = {tp: max(0, end - share) for tp, end in ends.items() if end}
            records = [
                Outgoing(
                    r.topic,
                    None if r.key is None else r.key.decode(),
                    r.value,
                    r.partition,
                )
                for r in reader.read(starts)
            ]
            found.append(records[:count])
    return found


def dead_lettered(
    kafka: KafkaSettings,
    starts: Mapping[TP, int],
    wanted: set[tuple[str, int, int]],
) -> set[tuple[str, int, int]]:
    """Which of the records at ``wanted`` coordinates have a dead letter on
    ``saga.dlq`` after ``starts``."""
    codec = DeadLetterCodec()
    found = set()
    with PartitionReader(kafka) as reader:
        for record in reader.read(
            {tp: o for tp, o in starts.items() if tp.topic == SAGA_DLQ}
        ):
            try:
                letter = codec.decode(record.value)
            except MessageDecodeError:
                continue  # not a letter: not one of ours either
            where = (letter.topic, letter.partition, letter.offset)
            if where in wanted:
                found.add(where)
    return found


def where(acks: Sequence[Ack]) -> str:
    shown = ", ".join(f"{a.topic}/{a.partition}@{a.offset}" for a in acks[:3])
    return shown + (f" and {len(acks) - 3} more" if len(acks) > 3 else "")
