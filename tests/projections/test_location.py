"""Finding the projections under a data directory, and how fresh they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from actors.app.config import default_data_dir, load_config
from projections.freshness import GONE_AFTER_S, STALE_AFTER_S, beat, freshness
from projections.location import NoProjectionsError, locate
from tests.projections.test_status import published, saga

OLD, NEW, NEWEST = (
    "run20261126010000aaaaaa",
    "run20261126020000bbbbbb",
    ("run20261126030000cccccc"),
)


def test_a_data_dir_with_runs_reads_the_newest_that_published(tmp_path: Path) -> None:
    for run in (OLD, NEW):
        published(tmp_path / run)
    (tmp_path / NEWEST).mkdir()  # started, nothing published yet
    found = locate(tmp_path)
    assert found.directory == tmp_path / NEW and found.run == NEW
    assert found.note == (
        f"reading run {NEW}, the newest of 3 runs in {tmp_path} that published "
        f"projections ({NEWEST} has none yet); `--run ID` reads another"
    )
    assert locate(tmp_path, OLD).directory == tmp_path / OLD
    assert locate(tmp_path, "20261126010000").directory == tmp_path / OLD  # a prefix
    with pytest.raises(NoProjectionsError, match="matches more than one run"):
        locate(tmp_path, "2026")
    with pytest.raises(NoProjectionsError, match=f"matches no run .* {NEWEST}, {NEW}"):
        locate(tmp_path, "run1999")
    # Through the command line: the choice is said on stderr.
    result = saga("status", "--json", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"reading run {NEW}" in result.stderr
    assert json.loads(result.stdout)["dead_letters"] == 1
    chosen = saga("history", "g-completed", "--data-dir", str(tmp_path), "--run", OLD)
    assert chosen.returncode == 0 and chosen.stderr == ""


def test_a_writers_own_projections_come_first(tmp_path: Path) -> None:
    published(tmp_path)  # as saga serve writes them
    assert locate(tmp_path).note is None
    published(tmp_path / OLD)
    found = locate(tmp_path)
    assert found.directory == tmp_path and found.run is None
    assert found.note == (
        f"reading {tmp_path}'s own projections; it also holds 1 run "
        "(`--run ID` reads one)"
    )


def test_nothing_to_read_says_what_was_found(tmp_path: Path) -> None:
    with pytest.raises(NoProjectionsError, match="does not exist"):
        locate(tmp_path / "nowhere")
    with pytest.raises(NoProjectionsError, match="no runs"):
        locate(tmp_path)
    (tmp_path / OLD).mkdir()
    with pytest.raises(NoProjectionsError, match=f"none of the 1 run in .*{OLD}"):
        locate(tmp_path)
    result = saga("list", "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "has published projections yet" in result.stderr


def test_the_default_data_dir_is_absolute_and_follows_xdg(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == str(tmp_path / "saga")
    home = default_data_dir({"XDG_DATA_HOME": "relative/ignored"})
    assert home == str(Path.home() / ".local" / "share" / "saga")
    assert os.path.isabs(load_config(environ={}).data_dir)
    assert load_config(environ={"SAGA_DATA_DIR": "/srv/saga"}).data_dir == "/srv/saga"


def test_commands_agree_on_the_default_data_dir(
    tmp_path: Path, data_home: Path
) -> None:
    """Nothing passed: every reader reads $XDG_DATA_HOME/saga and its runs."""
    published(data_home / "saga" / OLD)
    for command in (["status"], ["list"], ["history", "g-completed"]):
        result = saga(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert f"reading run {OLD}, the newest of 1 run in {data_home}" in (
            result.stderr
        )


def test_freshness_follows_the_writers_heartbeat(tmp_path: Path) -> None:
    directory = published(tmp_path) / "projections"
    published_at = float((directory / "published_at").read_text())
    unknown = freshness(directory, now=published_at + 3)
    assert unknown.writer == "unknown" and not unknown.stale and not unknown.final
    assert unknown.text() == "published 3.0 s ago (no writer heartbeat found)"

    # A running writer with nothing unpublished: fresh, however old the files.
    beat(directory, unpublished_since=None, at=published_at + 100)
    idle = freshness(directory, now=published_at + 101)
    assert idle.writer == "running" and not idle.stale and idle.warning() is None
    assert idle.text() == "published 101.0 s ago, writer running"

    # Changes unpublished for longer than the writer takes to publish: stale.
    since = published_at + 100 - STALE_AFTER_S - 1
    beat(directory, unpublished_since=since, at=published_at + 100)
    stale = freshness(directory, now=published_at + 100.5)
    assert stale.stale and stale.writer == "running"
    assert stale.text().startswith("stale: published 100.5 s ago, while the running ")
    assert stale.warning() == stale.text()

    # No beat for a while: no writer, the files final as of its last beat.
    gone = freshness(directory, now=published_at + 100 + GONE_AFTER_S + 1)
    assert gone.writer == "gone" and gone.final
    assert "no writer running since " in gone.text()
    assert "its heartbeat stopped): final as of then, stale by" in gone.text()

    beat(directory, unpublished_since=None, stopped=True, at=published_at + 1)
    stopped = freshness(directory, now=published_at + 2)
    assert stopped.writer == "stopped" and stopped.final and not stopped.stale
    assert stopped.to_json() | {"text": ""} == {
        "published_age_s": 2.0,
        "writer": "stopped",
        "heartbeat_age_s": 1.0,
        "behind_s": 0.0,
        "stale": False,
        "final": True,
        "text": "",
    }
    # The readers say so: status in its report, list and history on stderr.
    report = json.loads(saga("status", "--json", "--data-dir", str(tmp_path)).stdout)
    assert report["projection"]["freshness"]["writer"] == "stopped"
    text = saga("status", "--data-dir", str(tmp_path)).stdout.splitlines()
    # The freshness line closes the projection's lines (hop figures follow).
    projection = [line for line in text if line.startswith("projection   ")]
    assert projection[-1].startswith("projection   no writer running since ")
    listing = saga("list", "--data-dir", str(tmp_path))
    assert "no writer running since" in listing.stderr
    history = saga("history", "g-completed", "--data-dir", str(tmp_path))
    assert "no writer running since" in history.stderr
