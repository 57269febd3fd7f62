"""How fresh the published projections are: the writer's heartbeat, read back.

The projection writer stamps ``projections/heartbeat`` about every second,
idle or not (:func:`beat`): when it beat, and since when it has had changes the
published files lack (``None`` while they are current). A reader compares
(:func:`freshness`):

- a heartbeat newer than :data:`GONE_AFTER_S`: a writer runs. The files are
  *stale* when it has had unpublished changes for over :data:`STALE_AFTER_S`
  (it publishes every couple of seconds while it has news);
- a heartbeat marked stopped, or older than that: no writer runs, and the
  files are *final* as of when it stopped;
- no heartbeat: a writer from before heartbeats (or none ever ran); only the
  publication's age is known.

``saga status``, ``top``, ``list`` and ``history`` say which.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import msgspec

#: The heartbeat's file, beside the published tables.
HEARTBEAT: Final = "heartbeat"
#: How often the writer beats.
BEAT_EVERY_S: Final = 1.0
#: No beat for this long: no writer is running.
GONE_AFTER_S: Final = 5.0
#: Unpublished changes this old make the published files stale.
STALE_AFTER_S: Final = 5.0

Writer = Literal["running", "stopped", "gone", "unknown"]


class Beat(msgspec.Struct, frozen=True):
    """One heartbeat: epoch seconds throughout."""

    at: float
    #: Since when the writer has had changes the published files lack.
    unpublished_since: float | None
    pid: int
    #: The writer stopped cleanly after publishing everything.
    stopped: bool = False


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Beat)


def beat(
    directory: str | Path,
    *,
    unpublished_since: float | None,
    stopped: bool = False,
    at: float | None = None,
) -> None:
    """Stamp the heartbeat in ``directory`` (the published projections'),
    replaced atomically so a reader never meets half of one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = Beat(
        at=time.time() if at is None else at,
        unpublished_since=unpublished_since,
        pid=os.getpid(),
        stopped=stopped,
    )
    replace_file(directory, HEARTBEAT, _ENCODER.encode(stamp))


def replace_file(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory``/``name`` whole, replacing it atomically: a reader
    meets the old file or the new one, never half of one."""
    partial = directory / f".{name}.partial"
    partial.write_bytes(data)
    os.replace(partial, directory / name)


class Freshness(NamedTuple):
    """What a reader can say about the published projections' age."""

    #: When they were published (epoch s; ``None``: never).
    published_at: float | None
    #: The writer's newest heartbeat (epoch s; ``None``: none found).
    heartbeat_at: float | None
    writer: Writer
    #: How long the writer had had changes the files lack, at its newest
    #: heartbeat (0 when they were current; ``None`` without a heartbeat).
    behind_s: float | None
    #: When this was read (epoch s).
    now: float

    @property
    def published_age_s(self) -> float | None:
        if self.published_at is None:
            return None
        return max(0.0, self.now - self.published_at)

    @property
    def stale(self) -> bool:
        """The files lack changes the writer has had for a while."""
        return self.behind_s is not None and self.behind_s > STALE_AFTER_S

    @property
    def final(self) -> bool:
        """No writer runs: the files will not change."""
        return self.writer in ("stopped", "gone")

    def text(self) -> str:
        """One line for people: the publication's age and the writer's state."""
        age = self.published_age_s
        published = (
            "never published" if age is None else f"published {age_text(age)} ago"
        )
        if self.writer == "unknown":
            return f"{published} (no writer heartbeat found)"
        behind = f"{self.behind_s:,.1f} s" if self.behind_s is not None else ""
        if self.writer == "running":
            if self.stale:
                return (
                    f"stale: {published}, while the running writer has "
                    f"had newer data for {behind} (is it failing to publish? "
                    "see its log)"
                )
            return f"{published}, writer running"
        assert self.heartbeat_at is not None
        how = "stopped" if self.writer == "stopped" else "its heartbeat stopped"
        text = (
            f"no writer running since {_clock(self.heartbeat_at)} "
            f"({age_text(self.now - self.heartbeat_at)} ago, {how}): final as of then"
        )
        if self.stale:
            text += f", stale by {behind} it never published"
        return f"{text}; {published}"

    def warning(self) -> str | None:
        """The line to warn with (stale, or no writer), or ``None``."""
        return self.text() if self.stale or self.final else None

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "published_age_s": rounded(self.published_age_s),
            "writer": self.writer,
            "heartbeat_age_s": rounded(
                None if self.heartbeat_at is None else self.now - self.heartbeat_at
            ),
            "behind_s": rounded(self.behind_s),
            "stale": self.stale,
            "final": self.final,
            "text": self.text(),
        }


def freshness(directory: str | Path, now: float | None = None) -> Freshness:
    """The freshness of the projections published in ``directory`` (a
    ``projections/`` folder), as of ``now`` (epoch s; default: the clock)."""
    directory = Path(directory)
    now = time.time() if now is None else now
    try:
        published: float | None = float((directory / "published_at").read_text())
    except (OSError, ValueError):
        published = None
    try:
        stamp: Beat | None = _DECODER.decode((directory / HEARTBEAT).read_bytes())
    except (OSError, msgspec.DecodeError):
        stamp = None
    if stamp is None:
        return Freshness(published, None, "unknown", None, now)
    since = stamp.unpublished_since
    behind = 0.0 if since is None else max(0.0, stamp.at - since)
    writer: Writer
    if stamp.stopped:
        writer = "stopped"
    elif now - stamp.at > GONE_AFTER_S:
        writer = "gone"
    else:
        writer = "running"
    return Freshness(published, stamp.at, writer, behind, now)


def age_text(seconds: float) -> str:
    """A duration for people: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _clock(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))
