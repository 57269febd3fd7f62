"""Where the time goes, for ``saga status``: the actors' hop histograms on file.

The hop histograms (:mod:`events.wire.latency`) live in the actors' processes,
and ``saga status`` reads files. So while ``saga serve``, ``saga run`` or
``saga bench`` runs the platform, a thread of that command (:class:`HopWriter`)
asks every host, router and service for its stats every :data:`WRITE_EVERY_S`
and writes their hops, summed over the actors, to ``projections/hops`` in the
data directory, beside the projection writer's heartbeat: stamped with when,
replaced atomically. On a clean stop it writes them once more, marked final.

A reader (:func:`hops_report`) shows figures that are live (written in the
last :data:`STALE_AFTER_S`) or final, and says in one line when there are none,
or they are stale (the command that wrote them was killed). The histograms
count since each actor's process started: an actor that Ray restarted starts
its counts again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from events.wire.latency import HOPS, PER, HistogramCounts
from projections.freshness import age_text, replace_file

log = logging.getLogger(__name__)

#: The file, in the published projections' directory.
HOPS_FILE: Final = "hops"
#: How often the platform's command writes it.
WRITE_EVERY_S: Final = 2.0
#: Figures written longer ago than this, and not marked final, are stale.
STALE_AFTER_S: Final = 10.0

#: The hops of every actor that answered, one mapping each.
Gather = Callable[[], list[Mapping[str, HistogramCounts]]]


class HopSummary(msgspec.Struct, frozen=True):
    """What the file holds: each hop's histogram summed over the actors that
    time it (epoch seconds for ``at``)."""

    at: float
    hops: dict[str, HistogramCounts]
    pid: int
    #: Written as the platform stopped: the figures will not change.
    final: bool = False


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(HopSummary)


def write_hops(directory: Path, summary: HopSummary) -> None:
    """Replace ``directory``/hops atomically (a reader never meets half)."""
    directory.mkdir(parents=True, exist_ok=True)
    replace_file(directory, HOPS_FILE, _ENCODER.encode(summary))


def merged(
    actors: Sequence[Mapping[str, HistogramCounts]],
) -> dict[str, HistogramCounts]:
    """Each hop's histogram over every actor that reported it."""
    total: dict[str, HistogramCounts] = {}
    for hops in actors:
        for hop, counts in hops.items():
            mine = total.get(hop)
            total[hop] = counts if mine is None else mine.merged(counts)
    return total


class HopWriter:
    """Writes the hops ``gather`` collects from the actors to ``directory``
    every :data:`WRITE_EVERY_S`, on a daemon thread. When no actor answers,
    the figures written last are written again."""

    def __init__(self, gather: Gather, directory: Path) -> None:
        self._gather = gather
        self._directory = directory
        self._last: dict[str, HistogramCounts] = {}
        # The final write may meet a round the thread has not finished.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saga-hops", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(WRITE_EVERY_S):
            try:
                self._write(final=False)
            except Exception:
                # Only the status section goes without: it says the figures
                # are stale.
                log.exception("writing the hop latencies failed")

    def stop(self) -> None:
        """Stop the thread, then write the figures once more, as final."""
        self._stopping.set()
        self._thread.join(timeout=WRITE_EVERY_S * 5)
        try:
            self._write(final=True)
        except Exception:
            log.exception("writing the final hop latencies failed")

    def _write(self, *, final: bool) -> None:
        with self._lock:
            answers = self._gather()
            if answers:
                self._last = merged(answers)
            summary = HopSummary(time.time(), self._last, os.getpid(), final)
            write_hops(self._directory, summary)


def hops_report(directory: Path, now: float | None = None) -> dict[str, Any]:
    """``saga status``'s section: each hop's p50, p99 (ms, estimated from its
    buckets) and count when the figures are live or final, and ``text``: one
    line on them (how old, or why there are none)."""
    now = time.time() if now is None else now
    path = directory / HOPS_FILE
    try:
        summary: HopSummary | None = _DECODER.decode(path.read_bytes())
    except FileNotFoundError:
        summary = None
    except (OSError, msgspec.DecodeError) as exc:
        return _none(f"no figures: {path} does not read ({exc})")
    if summary is None:
        return _none(
            "no figures: no platform has run on this data directory since hop "
            "latencies were recorded (saga serve and saga run write them)"
        )
    age = max(0.0, now - summary.at)
    if summary.final:
        state = "final"
        text = f"final, as the platform stopped {age_text(age)} ago"
    elif age > STALE_AFTER_S:
        return {
            "state": "stale",
            "written_age_s": round(age, 3),
            "hops": [],
            "text": f"stale: last written {age_text(age)} ago, and not as the "
            "platform stopped (was its command killed?)",
        }
    else:
        state = "live"
        text = f"live, written {age_text(age)} ago"
    rows = []
    for hop, name in HOPS.items():
        counts = summary.hops.get(hop)
        if counts is None or not counts.count:
            continue
        rows.append(
            {
                "hop": hop,
                "name": name,
                "count": counts.count,
                "per": PER[hop],
                "p50_ms": _ms(counts.quantile(0.5)),
                "p99_ms": _ms(counts.quantile(0.99)),
            }
        )
    if not rows:
        text += ": nothing timed yet"
    return {
        "state": state,
        "written_age_s": round(age, 3),
        "hops": rows,
        "text": f"{text} (since each actor started)" if rows else text,
    }


def _none(text: str) -> dict[str, Any]:
    return {"state": "absent", "written_age_s": None, "hops": [], "text": text}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
