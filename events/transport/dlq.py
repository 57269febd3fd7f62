"""Reading the dead-letter queue and sending letters back where they came from.

A letter is named by its position on ``saga.dlq``: ``PARTITION:OFFSET``.
Replaying one publishes its original bytes, with the original key, to its
original topic and partition, where the consumer that gave up on it (or a fixed
version of it) gets it again. A letter that kept only a prefix of an oversized
original cannot be replayed from the queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from events.errors import EventsError, MessageDecodeError
from events.transport.admin import TopicAdmin
from events.transport.clients import Closing
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing, Record
from events.wire.dead_letters import DeadLetter, DeadLetterCodec
from events.wire.topics import SAGA_DLQ, SAGA_EVENTS, SAGA_SNAPSHOTS

#: Topics only the platform writes: a letter naming one is never re-sent there.
_NOT_REPLAYABLE = (SAGA_EVENTS, SAGA_SNAPSHOTS, SAGA_DLQ)


@dataclass(frozen=True)
class Entry:
    """A letter and where it sits on the queue."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def complete(self) -> bool:
        return len(self.letter.payload) >= self.letter.payload_size


def parse_id(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise EventsError(
            f"dead letter id {text!r} must be PARTITION:OFFSET, as `saga dlq list` "
            "prints it"
        )
    return int(partition), int(offset)


class DeadLetterQueue(Closing):
    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._codec = DeadLetterCodec()
        self._reader = PartitionReader(kafka)

    def entries(
        self, *, topic: str | None = None, saga_id: str | None = None
    ) -> list[Entry]:
        """Every letter on the queue, oldest first per partition, filtered."""
        with TopicAdmin(self._kafka) as admin:
            count = admin.partition_counts().get(SAGA_DLQ)
        if count is None:
            raise EventsError(f"{SAGA_DLQ} does not exist: run `saga topics create`")
        starts = {TP(SAGA_DLQ, p): 0 for p in range(count)}
        found: list[Entry] = []
        for record in self._reader.read(starts):
            letter = self._decode(record)
            if topic is not None and letter.topic != topic:
                continue
            if saga_id is not None and letter.saga_id != saga_id:
                continue
            found.append(Entry(record.partition, record.offset, letter))
        return sorted(found, key=lambda e: (e.letter.dead_at, e.partition, e.offset))

    def entry(self, text: str) -> Entry:
        partition, offset = parse_id(text)
        tp = TP(SAGA_DLQ, partition)
        for record in self._reader.read({tp: offset}, limit=1):
            if record.offset == offset:
                return Entry(partition, offset, self._decode(record))
        raise EventsError(f"no dead letter at {SAGA_DLQ} {text}")

    def _decode(self, record: Record) -> DeadLetter:
        try:
            return self._codec.decode(record.value)
        except MessageDecodeError as exc:
            raise EventsError(
                f"{SAGA_DLQ} {record.partition}:{record.offset} is not a dead "
                f"letter: {exc}"
            ) from exc

    def replay(self, entries: Iterable[Entry]) -> list[Entry]:
        """Send each letter's original back; all acknowledged, or raise."""
        chosen = list(entries)
        logs = [e.id for e in chosen if e.letter.topic in _NOT_REPLAYABLE]
        if logs:
            raise EventsError(
                f"dead letter(s) {', '.join(logs)} name a log topic "
                f"({', '.join(_NOT_REPLAYABLE)}), where only the platform writes: "
                "they record something the platform could not do (a saga's "
                "deadline, say), not a message to send again; read the reason "
                "with `saga dlq show` and resolve the saga instead"
            )
        partial = [e.id for e in chosen if not e.complete]
        if partial:
            raise EventsError(
                f"dead letter(s) {', '.join(partial)} kept only part of an oversized "
                "original; replay those from their original topic and offset"
            )
        with KafkaMessagePublisher(self._kafka) as publisher:
            publisher.send_all(
                Outgoing(
                    e.letter.topic,
                    e.letter.key,
                    e.letter.payload,
                    e.letter.partition,
                )
                for e in chosen
            )
        return chosen

    def close(self) -> None:
        self._reader.close()
