"""What ``saga run`` shows while it runs, on stderr: its status lines, and how
many sagas have ended.

On a terminal the count is a bar redrawn in place (rich), with the status lines
printed above it, coloured unless ``NO_COLOR`` is set. Anywhere else (a CI log,
a pipe, a file) there is no ``\\r`` and no escape code: the count is a plain
line every few seconds and once at the end, so a log reads like a log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as Bar


class Progress:
    """The run's console: :meth:`say` a status line, call with
    ``(done, total, elapsed_s)`` to show the count. Use it as a context
    manager: leaving it ends the bar (on a terminal)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        # rich decides colour (NO_COLOR, TERM=dumb) and whether this is a
        # terminal from the stream itself.
        self._console = Console(file=self._stream, highlight=False)
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self._finished = False
        self._bar: Bar | None = None
        self._task: TaskID | None = None

    @property
    def live(self) -> bool:
        """Whether the count is a bar redrawn in place (a terminal)."""
        return self._console.is_terminal

    def say(self, text: str) -> None:
        if self.live:
            # Through the console: with the bar up, it goes above the bar.
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        rate = f"{done / elapsed if elapsed > 0 else 0.0:,.0f}/s"
        if self.live:
            self._draw(done, total, rate, elapsed)
            return
        now = self._clock()
        due = self._last is None or now - self._last >= self._every_s
        if self._finished or not (due or done >= total):
            return
        self._last = now
        self._finished = done >= total
        self.say(f"{done:,}/{total:,} sagas ended  {rate}  {elapsed:,.0f} s")

    def _draw(self, done: int, total: int, rate: str, elapsed: float) -> None:
        if self._bar is None:
            self._bar = Bar(
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sagas ended  {task.fields[rate]}  {task.fields[took]}"),
                console=self._console,
            )
            self._bar.start()
            self._task = self._bar.add_task("sagas", total=total, rate="", took="")
        assert self._task is not None
        self._bar.update(
            self._task, completed=done, rate=rate, took=f"{elapsed:,.0f} s"
        )
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar, leaving its last frame; later lines go below it."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
