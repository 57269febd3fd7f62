"""``saga run``'s console: a bar redrawn in place on a terminal only, plain
lines anywhere else, colour never with NO_COLOR. Real terminals (a pty), no
mocks of them."""

from __future__ import annotations

import io
import os
import re
import select
from collections.abc import Iterator

import pytest

from actors.app.run import Progress

#: An SGR sequence that sets a colour (30-37, 38;..., 40-47, 48;..., 90-107).
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])[;m]")


def test_off_a_terminal_the_count_is_a_plain_line_every_few_seconds() -> None:
    stream = io.StringIO()
    now = [0.0]
    progress = Progress(stream, every_s=5.0, clock=lambda: now[0])
    with progress:
        progress.say("waiting for the consumer groups to form")
        for done, at in [(0, 0.0), (10, 1.0), (20, 4.9), (30, 5.0), (40, 7.0)]:
            now[0] = at
            progress(done, 100, at or 0.0)
        progress.say("killed the saga host (pid 42) with 40% of sagas sent")
        now[0] = 8.0
        progress(100, 100, 8.0)
        progress(100, 100, 8.0)  # the end, once
        progress.say("waiting for the services and routers to consume everything")
    assert stream.getvalue().splitlines() == [
        "waiting for the consumer groups to form",
        "0/100 sagas ended  0/s  0 s",
        "30/100 sagas ended  6/s  5 s",
        "killed the saga host (pid 42) with 40% of sagas sent",
        "100/100 sagas ended  12/s  8 s",
        "waiting for the services and routers to consume everything",
    ]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert not progress.live


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A pseudo-terminal: its reading end, and its writing end as a stream."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)
    reader, writer = os.openpty()
    stream = open(writer, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    yield reader, stream
    stream.close()
    os.close(reader)


def drawn(reader: int) -> str:
    chunks = []
    while select.select([reader], [], [], 0.5)[0]:
        chunks.append(os.read(reader, 65536))
    return b"".join(chunks).decode("utf-8", "replace")


def draw_a_run(stream: io.TextIOWrapper) -> Progress:
    progress = Progress(stream)
    with progress:
        progress.say("waiting for the consumer groups to form")
        progress(0, 100, 0.0)
        progress.say("killed the saga host (pid 42)")
        progress(100, 100, 2.0)
    return progress


def test_on_a_terminal_the_count_is_a_bar_redrawn_in_colour(
    terminal: tuple[int, io.TextIOWrapper],
) -> None:
    reader, stream = terminal
    assert draw_a_run(stream).live
    screen = drawn(reader)
    assert "100/100" in screen and "killed the saga host (pid 42)" in screen
    assert "\x1b" in screen  # redrawn in place
    assert COLOUR.search(screen), repr(screen)


def test_no_color_draws_the_bar_without_colour(
    terminal: tuple[int, io.TextIOWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    reader, stream = terminal
    draw_a_run(stream)
    screen = drawn(reader)
    assert "100/100" in screen
    assert not COLOUR.search(screen), repr(screen)
