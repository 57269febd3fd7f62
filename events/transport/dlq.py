"""Reading the dead-letter queue, and acting on its letters.

A letter is named by its position on ``saga.dlq``: ``PARTITION:OFFSET``. Its
state (open, replayed, resolved) is the newest :class:`LetterAction` about it
on ``saga.dlq.actions``; the queue itself is never rewritten.

Replaying a letter publishes its original bytes (or a fixed version of them),
with the original key, to its original topic and partition, where the consumer
that gave up on it (or a fixed version of it) gets it again; then it records
the letter as replayed, so ``replay --all`` never sends it twice. A replay cut
short between the two sends it again the next time: every consumer drops a
message it applied already (by messageId, or the step's idempotency key).
A letter for the same message as an earlier one (its topic and messageId, or
its key and bytes) links to it: the message failed again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from events.errors import EventsError, MessageDecodeError
from events.transport.admin import TopicAdmin
from events.transport.clients import Closing
from events.transport.publisher import KafkaMessagePublisher
from events.transport.reader import PartitionReader
from events.transport.settings import KafkaSettings
from events.transport.types import TP, Outgoing, Record
from events.wire.dead_letters import (
    DeadLetter,
    DeadLetterCodec,
    LetterAction,
    LetterActionCodec,
    LetterState,
)
from events.wire.topics import SAGA_DLQ, SAGA_DLQ_ACTIONS, SAGA_EVENTS, SAGA_SNAPSHOTS

#: Topics only the platform writes: a letter naming one is never re-sent there.
_NOT_REPLAYABLE = (SAGA_EVENTS, SAGA_SNAPSHOTS, SAGA_DLQ, SAGA_DLQ_ACTIONS)


@dataclass(frozen=True)
class Entry:
    """A letter, where it sits on the queue, and what was done with it."""

    partition: int
    offset: int
    letter: DeadLetter
    #: The newest action on it (``None``: open).
    action: LetterAction | None = None
    #: The id of the earlier letter for the same message, if any.
    previous: str | None = None

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def complete(self) -> bool:
        return len(self.letter.payload) >= self.letter.payload_size

    @property
    def state(self) -> LetterState:
        return LetterState.OPEN if self.action is None else self.action.state

    @property
    def same_message(self) -> tuple[object, ...]:
        """What makes two letters the same message failing again."""
        letter = self.letter
        if letter.message_id:
            return (letter.topic, letter.message_id)
        return (letter.topic, letter.key, letter.payload)


@dataclass(frozen=True)
class LetterQuery:
    """Which letters: every given field must match (``error`` in any case;
    ``since``/``until`` bound when the letter died, ``until`` excluded)."""

    topic: str | None = None
    saga_id: str | None = None
    #: The saga's type, and its status when the letter died, as the letter
    #: carries them ("" where whoever gave up on the message did not know).
    saga_type: str | None = None
    saga_status: str | None = None
    step: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    states: frozenset[LetterState] = field(default_factory=frozenset)

    def matches(self, entry: Entry) -> bool:
        letter = entry.letter
        return (
            (self.topic is None or letter.topic == self.topic)
            and (self.saga_id is None or letter.saga_id == self.saga_id)
            and (self.saga_type is None or letter.saga_type == self.saga_type)
            and (self.saga_status is None or letter.saga_status == self.saga_status)
            and (self.step is None or letter.step == self.step)
            and (self.error is None or self.error.lower() in letter.error.lower())
            and (self.since is None or letter.dead_at >= self.since)
            and (self.until is None or letter.dead_at < self.until)
            and (not self.states or entry.state in self.states)
        )


def error_kind(entry: Entry) -> str:
    """A letter's error with what differs between sagas masked (its sagaId,
    numbers), so letters that died the same way group together."""
    text = entry.letter.error
    if entry.letter.saga_id:
        text = text.replace(entry.letter.saga_id, "<saga>")
    return re.sub(r"\d+", "N", text)[:120]


#: The messageId of a release request acting on a letter (``saga dlq replay``
#: of a letter a saga is held behind): it names the letter.
_ACTING_ON = re.compile(r"^(?:replayed|resolved):([0-9]+:[0-9]+):")


def linked(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` in queue order, each linked to the letter before it for the
    same message (or, for a refused release request, the letter it acted on)."""
    last: dict[tuple[object, ...], str] = {}
    found = []
    for entry in sorted(
        entries, key=lambda e: (e.letter.dead_at, e.partition, e.offset)
    ):
        key = entry.same_message
        acting = _ACTING_ON.match(entry.letter.message_id or "")
        before = acting.group(1) if acting else last.get(key)
        found.append(replace(entry, previous=before))
        last[key] = entry.id
    return found


def parse_id(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise EventsError(
            f"dead letter id {text!r} must be PARTITION:OFFSET, as `saga dlq list` "
            "prints it"
        )
    return int(partition), int(offset)


class NoSuchLetterError(EventsError):
    """No dead letter has that id."""


class DeadLetterQueue(Closing):
    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._codec = DeadLetterCodec()
        self._actions = LetterActionCodec()
        self._reader = PartitionReader(kafka)

    def entries(self, query: LetterQuery | None = None) -> list[Entry]:
        """The letters that match ``query``, oldest first, each with its
        state and its link to the letter before it for the same message."""
        count = self._partitions(SAGA_DLQ)
        actions = self._read_actions()
        letters = [
            Entry(r.partition, r.offset, self._decode(r))
            for r in self._reader.read({TP(SAGA_DLQ, p): 0 for p in range(count)})
        ]
        every = linked(replace(e, action=actions.get(e.id)) for e in letters)
        return [e for e in every if query is None or query.matches(e)]

    def entry(self, text: str) -> Entry:
        """The letter ``PARTITION:OFFSET``; one that does not exist is told
        at once, from the partition's end, without waiting on a read."""
        partition, offset = parse_id(text)
        count = self._partitions(SAGA_DLQ)
        if partition >= count:
            raise NoSuchLetterError(
                f"no dead letter {text}: {SAGA_DLQ} has partitions 0..{count - 1}"
            )
        tp = TP(SAGA_DLQ, partition)
        end = self._reader.ends([tp])[tp]
        if offset >= end:
            raise NoSuchLetterError(
                f"no dead letter {text}: partition {partition} of {SAGA_DLQ} holds "
                f"offsets below {end} (`saga dlq list` names the letters)"
            )
        # Read to the end of the read (one record) before the next read: a
        # generator left open would let go of its partitions under that one.
        records = list(self._reader.read({tp: offset}, limit=1))
        for record in records:
            if record.offset == offset:
                found = Entry(partition, offset, self._decode(record))
                return replace(found, action=self._read_actions().get(found.id))
        raise NoSuchLetterError(f"no dead letter at {SAGA_DLQ} {text}")

    def _partitions(self, topic: str) -> int:
        with TopicAdmin(self._kafka) as admin:
            count = admin.partition_counts().get(topic)
        if count is None:
            raise EventsError(f"{topic} does not exist: run `saga topics create`")
        return count

    def _read_actions(self) -> dict[str, LetterAction]:
        """The newest action on each letter."""
        count = self._partitions(SAGA_DLQ_ACTIONS)
        newest: dict[str, LetterAction] = {}
        starts = {TP(SAGA_DLQ_ACTIONS, p): 0 for p in range(count)}
        for record in self._reader.read(starts):
            try:
                action = self._actions.decode(record.value)
            except MessageDecodeError as exc:
                raise EventsError(
                    f"{SAGA_DLQ_ACTIONS} {record.partition}:{record.offset} is not "
                    f"a letter action: {exc}"
                ) from exc
            before = newest.get(action.letter)
            if before is None or before.at <= action.at:
                newest[action.letter] = action
        return newest

    def _decode(self, record: Record) -> DeadLetter:
        try:
            return self._codec.decode(record.value)
        except MessageDecodeError as exc:
            raise EventsError(
                f"{SAGA_DLQ} {record.partition}:{record.offset} is not a dead "
                f"letter: {exc}"
            ) from exc

    def replay(
        self,
        entries: Iterable[Entry],
        *,
        operator: str = "",
        reason: str = "",
        payload: bytes | None = None,
    ) -> list[Entry]:
        """Send each open letter's original back (``payload``: a fixed version,
        for one letter), then record it replayed; all acknowledged, or raise.
        Returns the letters with their new state."""
        chosen = list(entries)
        refuse_closed(chosen, "replayed")
        logs = [e.id for e in chosen if e.letter.topic in _NOT_REPLAYABLE]
        if logs:
            raise EventsError(
                f"dead letter(s) {', '.join(logs)} name a log topic "
                f"({', '.join(_NOT_REPLAYABLE)}), where only the platform writes: "
                "they record something the platform could not do (a saga's "
                "deadline, say), not a message to send again; read the reason "
                "with `saga dlq show` and resolve the saga instead"
            )
        if payload is not None and len(chosen) != 1:
            raise EventsError("a fixed payload replaces one letter's, not several")
        partial = [e.id for e in chosen if not e.complete and payload is None]
        if partial:
            raise EventsError(
                f"dead letter(s) {', '.join(partial)} kept only part of an oversized "
                "original; replay those from their original topic and offset"
            )
        with KafkaMessagePublisher(self._kafka) as publisher:
            acks = publisher.send_all(
                Outgoing(
                    e.letter.topic,
                    e.letter.key,
                    e.letter.payload if payload is None else payload,
                    e.letter.partition,
                )
                for e in chosen
            )
            sent = [f"{a.topic}/{a.partition}/{a.offset}" for a in acks]
            return self._record(
                publisher, chosen, LetterState.REPLAYED, operator, reason, sent
            )

    def resolve(
        self, entries: Iterable[Entry], *, operator: str = "", reason: str = ""
    ) -> list[Entry]:
        """Close each open letter without replaying it."""
        return self.mark(
            entries, LetterState.RESOLVED, operator=operator, reason=reason
        )

    def mark(
        self,
        entries: Iterable[Entry],
        state: LetterState,
        *,
        operator: str = "",
        reason: str = "",
        sent: list[str] | None = None,
    ) -> list[Entry]:
        """Record each open letter ``state`` (``sent``: where each replay's
        message went, when the caller sent it another way)."""
        chosen = list(entries)
        refuse_closed(chosen, str(state))
        with KafkaMessagePublisher(self._kafka) as publisher:
            return self._record(publisher, chosen, state, operator, reason, sent)

    def _record(
        self,
        publisher: KafkaMessagePublisher,
        chosen: list[Entry],
        state: LetterState,
        operator: str,
        reason: str,
        sent: list[str] | None,
    ) -> list[Entry]:
        at = datetime.now(UTC)
        actions = [
            LetterAction(
                letter=e.id,
                state=state,
                at=at,
                operator=operator,
                reason=reason,
                sent="" if sent is None else sent[i],
            )
            for i, e in enumerate(chosen)
        ]
        publisher.send_all(
            Outgoing(SAGA_DLQ_ACTIONS, e.id, self._actions.encode(a), e.partition)
            for e, a in zip(chosen, actions, strict=True)
        )
        return [replace(e, action=a) for e, a in zip(chosen, actions, strict=True)]

    def close(self) -> None:
        self._reader.close()


def refuse_closed(entries: Iterable[Entry], verb: str) -> None:
    """Only open letters are replayed or resolved: a closed one says how."""
    closed = [e for e in entries if e.action is not None]
    if closed:
        told = "; ".join(
            f"{e.id} was {e.action.state} at {e.action.at:%Y-%m-%d %H:%M:%S}"
            + (f" (sent to {e.action.sent})" if e.action.sent else "")
            for e in closed
            if e.action is not None
        )
        raise EventsError(
            f"only open letters can be {verb}: {told}. A replayed message that "
            "failed again has a new letter (`saga dlq list` links it to this one)"
        )
