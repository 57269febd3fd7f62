"""Who answers a backtest's commands, and when: the participants as recorded.

A command stream the recorded saga sent is answered as it was (the recorded
answers, each as long after the stream's first command as it came then).

One the saga sent but never heard back on (it gave up first: a refusal after
that is not recorded, since the saga no longer listens) is answered when the
participant answered the streams of that step sent just after it: a
participant takes its commands in order, so what was sent later and answered
tells when this one would have been. Of the few sent next that were answered
after the saga last acted on its own (or, for one it still waited on, after
the recording ended), one is drawn.

One the recorded saga never sent (a policy took it further) takes another
saga's stream of that step, drawn from those that started nearest in time: a
participant that was slow or down then is slow or down for the backtest too.

Draws use the backtest's seeded random numbers.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from typing import Final

from actors.analysis.recording import Answer, Recording

#: How many streams, nearest in time, a draw chooses among.
NEAREST: Final = 25
#: How many of the streams sent next an unanswered stream's answer is drawn
#: from.
LATER: Final = 5


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
        of, first sent at ``sent_at`` (counted from then); ``end`` is when the
        recording ended."""
        own = recording.answers.get(step_id)
        if own:
            return own
        first = recording.first_sent.get(step_id)
        if first is None:
            return self.draw(step_id, sent_at, rng)
        # Still waited on at the end: nothing came before the recording ended.
        heard = end if step_id == recording.awaited else recording.last_heard[step_id]
        return self.after(step_id, first, heard, rng)

    def draw(self, step_id: str, sent_at: int, rng: random.Random) -> list[Answer]:
        """Another saga's answers to ``step_id``, from a stream that started
        near ``sent_at``; none when the step was never answered."""
        starts = self._starts.get(step_id, [])
        if not starts:
            return []
        at = bisect.bisect_left(starts, sent_at)
        near = list(range(max(0, at - NEAREST), min(len(starts), at + NEAREST)))
        near.sort(key=lambda i: abs(starts[i] - sent_at))
        return _named_apart(self._answers[step_id][rng.choice(near[:NEAREST])])

    def after(
        self, step_id: str, first: int, heard: int, rng: random.Random
    ) -> list[Answer]:
        """The answers of a stream first sent at ``first`` and last acted on
        at ``heard``, as those sent next were answered (see the module's
        docstring), counted from ``first``; none when none fits."""
        starts = self._starts.get(step_id, [])
        streams = self._answers.get(step_id, [])
        fits: list[int] = []
        for i in range(bisect.bisect_left(starts, first), len(starts)):
            if starts[i] + streams[i][0].after_ms > heard:
                fits.append(i)
                if len(fits) == LATER:
                    break
        if not fits:
            return []
        chosen = rng.choice(fits)
        shift = starts[chosen] - first
        return _named_apart(
            [
                a._replace(after_ms=a.after_ms + shift, inferred=True)
                for a in streams[chosen]
            ]
        )


def _named_apart(answers: list[Answer]) -> list[Answer]:
    """Another saga's answers, their reply ids named apart (so no saga takes
    one for its own) and ranked after the recorded inputs of their instant."""
    return [a._replace(reply_id=f"drawn:{a.reply_id}", rank=1 << 40) for a in answers]
