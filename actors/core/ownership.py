"""Who may write a partition of ``saga.events``: claims, epochs, and the one rule
every reader of the log applies.

A partition has one writer at a time, its owner. A host becomes the owner by
appending a :class:`Claim` with a higher epoch than the one in force; every
:class:`~actors.core.saga_events.LogRecord` it appends after carries that
epoch. Kafka cannot refuse a plain append from an owner that was replaced (a
host paused past its move, a second engine in a rolling deploy), so the fence
is applied where the log is read, the same way by everyone (restore, reload,
the projection writer, audits, ``saga show``): :class:`Fence`.

Walking a partition in offset order, the fence keeps the epoch in force:

- a claim with a higher epoch takes force; one with an equal or lower epoch
  is void (the first claim of an epoch in the log wins, so a claimant holding
  a stale grant never takes over);
- a record of the epoch in force is applied;
- a record of a lower epoch was appended by a replaced owner after the claim
  that replaced it: it is skipped, and counted;
- a record of a higher epoch means the claim before it is missing: the log is
  corrupt, and reading it raises.

The rule runs before the saga's own sequence check: otherwise a replaced
owner's event ``seq`` N, read first, would hide the new owner's event N.
Records written before any claim carry epoch 0, the epoch in force at a
partition's start, so logs from before claims read as they always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from actors.core.saga_events import HistoryCodec, LogRecord
from actors.errors import RestoreError
from events.wire.messages import decode_json


class Claim(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="kind",
    tag="claim",
):
    """``owner`` (a host's name, in ``engine``) writes ``partition`` from here
    on, at ``epoch``. ``at`` (epoch ms) and ``node`` (the Ray node the owner
    runs on) are for people reading the log."""

    partition: int
    epoch: int
    owner: str
    engine: str
    at: int = 0
    node: str = ""


#: How a claim's encoding starts: the tag comes first, and only claims have
#: one, so a record is told from a claim without decoding it twice.
_CLAIM_PREFIX: Final = b'{"kind":"claim"'


class LogCodec:
    """Encodes and decodes what ``saga.events`` holds: :class:`LogRecord` and
    :class:`Claim`; built once, reused. Decoding raises only a typed
    :class:`~events.errors.MessageDecodeError`."""

    __slots__ = ("_claims", "_records")

    def __init__(self) -> None:
        self._records = HistoryCodec()
        self._claims = msgspec.json.Decoder(Claim)

    def encode(self, entry: LogRecord | Claim) -> bytes:
        return self._records.encode(entry)

    def decode(self, raw: bytes) -> LogRecord | Claim:
        if raw.startswith(_CLAIM_PREFIX):
            claim: Claim = decode_json(self._claims, raw)
            return claim
        return self._records.decode(raw)


class Fence:
    """The epoch in force on each partition, for a reader walking ``saga.events``
    in offset order (see the module's rule).

    ``epochs`` are the epochs in force where the reader starts (a snapshot's,
    say); a partition read from offset 0 starts at epoch 0. ``joined=True`` is
    for a reader that starts part-way through a log without knowing the epoch
    there (a follower starting at the log's end): until it meets a claim, it
    takes each record's epoch as the one in force, since it cannot tell.
    """

    __slots__ = ("_claims", "_codec", "_epochs", "_joined", "_known", "skipped")

    def __init__(
        self, epochs: Mapping[int, int] | None = None, *, joined: bool = False
    ) -> None:
        self._epochs: dict[int, int] = dict(epochs or {})
        #: Partitions whose epoch in force is known, when ``joined``.
        self._known: set[int] = set(self._epochs)
        self._claims: dict[int, Claim] = {}
        self._joined = joined
        self._codec = LogCodec()
        #: Records skipped because a replaced owner appended them.
        self.skipped = 0

    def epoch(self, partition: int) -> int:
        """The epoch in force on ``partition`` at the reader's position."""
        return self._epochs.get(partition, 0)

    def claim(self, partition: int) -> Claim | None:
        """The claim in force on ``partition``, if the reader met one."""
        return self._claims.get(partition)

    def admit(self, partition: int, entry: LogRecord | Claim, where: str = "") -> bool:
        """Whether ``entry``, the next on ``partition``, is applied: ``True``
        only for a record of the epoch in force. A claim is never applied, it
        may only change the epoch."""
        current = self._epochs.get(partition, 0)
        if isinstance(entry, Claim):
            if entry.epoch > current:
                self._epochs[partition] = entry.epoch
                self._claims[partition] = entry
                self._known.add(partition)
            return False
        if entry.epoch == current:
            return True
        if entry.epoch < current:
            self.skipped += 1
            return False
        if self._joined and partition not in self._known:
            self._epochs[partition] = entry.epoch  # a claim before the reader came
            return True
        raise RestoreError(
            f"{where or f'partition {partition}'}: saga {entry.saga_id} was written "
            f"at epoch {entry.epoch}, but the epoch in force is {current} and no "
            "claim of a higher one came before it: the log is missing records"
        )

    def read(self, partition: int, raw: bytes, where: str = "") -> LogRecord | None:
        """Decode the next entry of ``partition``; the record if it is applied,
        else ``None`` (a claim, or a replaced owner's record)."""
        entry = self._codec.decode(raw)
        if self.admit(partition, entry, where):
            assert isinstance(entry, LogRecord)
            return entry
        return None
