"""Who answers a backtest's commands, and when: the participants as recorded.

A command stream the recorded saga sent is answered as it was (the recorded
answers, each as long after the stream's first command as it came then). One
the saga sent but never heard back on (it gave up first, or the recording
ended) takes the answers of another saga's stream of the same step that took
longer than that saga waited: the recording says only that the answer comes
later. One the recorded saga never sent (a policy took it further) takes
another saga's stream of that step. Another saga's stream is drawn, with the
backtest's seeded random numbers, from those that started nearest in time: a
participant that was slow or down then is slow or down for the backtest too.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from typing import Final

from actors.analysis.recording import Answer, Recording

#: How many streams, nearest in time, a draw chooses among.
NEAREST: Final = 25


class Streams:
    """Every recorded command stream of each stepId: when it started and the
    answers it got, ordered by start."""

    def __init__(self, recordings: Iterable[Recording]) -> None:
        found: dict[str, list[tuple[int, list[Answer]]]] = {}
        for recording in recordings:
            for step_id, first in recording.first_sent.items():
                answers = recording.answers.get(step_id)
                if answers:
                    found.setdefault(step_id, []).append((first, answers))
        self._starts: dict[str, list[int]] = {}
        self._answers: dict[str, list[list[Answer]]] = {}
        for step_id, streams in found.items():
            streams.sort(key=lambda s: s[0])
            self._starts[step_id] = [first for first, _ in streams]
            self._answers[step_id] = [answers for _, answers in streams]

    def answers(
        self,
        recording: Recording,
        step_id: str,
        sent_at: int,
        end: int,
        rng: random.Random,
    ) -> list[Answer]:
        """The answers to the stream ``step_id`` of the saga ``recording`` is
        of, first sent at ``sent_at``; ``end`` is when the recording ended."""
        own = recording.answers.get(step_id)
        if own:
            return own
        first = recording.first_sent.get(step_id)
        if first is None:
            return self.draw(step_id, sent_at, rng)
        return self.draw(step_id, sent_at, rng, longer_than=end - first)

    def draw(
        self,
        step_id: str,
        sent_at: int,
        rng: random.Random,
        longer_than: int | None = None,
    ) -> list[Answer]:
        """Another saga's answers to ``step_id``, from a stream that started
        near ``sent_at`` (and, with ``longer_than``, whose first answer took
        longer than that); none when no stream fits."""
        starts = self._starts.get(step_id, [])
        streams = self._answers.get(step_id, [])
        fits = list(range(len(streams)))
        if longer_than is not None:
            fits = [i for i in fits if streams[i][0].after_ms > longer_than]
        if not fits:
            return []
        at = bisect.bisect_left([starts[i] for i in fits], sent_at)
        near = fits[max(0, at - NEAREST) : at + NEAREST]
        near.sort(key=lambda i: abs(starts[i] - sent_at))
        chosen = streams[rng.choice(near[:NEAREST])]
        # Another saga's reply ids: named apart, so no saga mistakes one for
        # its own.
        return [
            a._replace(reply_id=f"drawn:{a.reply_id}", rank=1 << 40) for a in chosen
        ]
