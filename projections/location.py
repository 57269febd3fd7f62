"""Where a data directory's projections are: the directory itself, or one of
the runs under it.

``saga serve`` writes into its data directory (``DATA_DIR/projections/``);
``saga run`` writes each run into ``DATA_DIR/run<id>/`` beside the others.
Every reader resolves the directory it is given the same way
(:func:`locate`): the directory's own projections when it has them, else the
run named (``--run ID``), else the newest run that published any, saying
which. When it cannot decide it says what it found.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from projections.errors import ProjectionError

#: What a writer's data directory holds for readers.
PROJECTIONS = "projections"
#: The names ``saga run`` gives its runs: ``run`` and a UTC timestamp, so
#: their order by name is their order in time.
RUN_PREFIX = "run"


class NoProjectionsError(ProjectionError):
    """The data directory holds neither projections nor a run that has any."""


class Located(NamedTuple):
    """A writer's data directory, as a reader resolved it."""

    #: The directory whose ``projections/`` the reader opens.
    directory: Path
    #: The run chosen under the given directory (``None``: the directory itself).
    run: str | None
    #: What to tell the user about the choice (on stderr), or ``None``.
    note: str | None

    @property
    def projections(self) -> Path:
        return self.directory / PROJECTIONS


def has_projections(directory: Path) -> bool:
    """Whether a writer published into ``directory/projections``."""
    return (directory / PROJECTIONS / "published_at").exists()


def runs(data_dir: str | Path) -> list[Path]:
    """The runs under ``data_dir``, newest first."""
    try:
        found = [
            p
            for p in Path(data_dir).iterdir()
            if p.name.startswith(RUN_PREFIX) and p.is_dir()
        ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda p: p.name, reverse=True)


def locate(data_dir: str | Path, run: str | None = None) -> Located:
    """The directory to read under ``data_dir`` (see the module's docstring).

    ``run`` is a run's name under ``data_dir`` (``run20261126...``), or a
    prefix of one that no other run shares. Raises
    :class:`NoProjectionsError` naming what was found when nothing fits."""
    base = Path(data_dir).expanduser()
    found = runs(base)
    if run is not None:
        return Located(_named(base, found, run), run, None)
    if has_projections(base):
        note = None
        if found:
            note = (
                f"reading {base}'s own projections; it also holds "
                f"{_count(found)} (`--run ID` reads one)"
            )
        return Located(base, None, note)
    published = [p for p in found if has_projections(p)]
    if not published:
        raise NoProjectionsError(_nothing(base, found))
    newest = published[0]
    newer = found[: found.index(newest)]
    note = f"reading run {newest.name}, the newest of {_count(found)} in {base}"
    if newer:
        note += (
            f" that published projections ({', '.join(p.name for p in newer)} "
            "has none yet)"
        )
    if len(found) > 1:
        note += "; `--run ID` reads another"
    return Located(newest, newest.name, note)


def _named(base: Path, found: list[Path], run: str) -> Path:
    """The run ``run`` names under ``base``."""
    matches = [p for p in found if p.name == run] or [
        p for p in found if p.name.startswith(run) or p.name.startswith(f"run{run}")
    ]
    if len(matches) == 1:
        return matches[0]
    if not found:
        raise NoProjectionsError(f"--run {run}: {base} holds no runs (run*/)")
    which = "matches no run" if not matches else "matches more than one run"
    raise NoProjectionsError(
        f"--run {run} {which} in {base}; its runs, newest first: {_listing(found)}"
    )


def _nothing(base: Path, found: list[Path]) -> str:
    if not base.exists():
        return (
            f"{base} does not exist, so it holds no published projections (pass "
            "--data-dir as given to `saga serve` or `saga run`, or set "
            "SAGA_DATA_DIR)"
        )
    if not found:
        return (
            f"{base} holds no published projections ({PROJECTIONS}/ missing or "
            "not yet published) and no runs (run*/): is the projection writer "
            "running with this data dir (`saga serve` or `saga run`)?"
        )
    return (
        f"none of the {_count(found)} in {base} has published projections yet "
        f"(newest first: {_listing(found)}): a run publishes within seconds of "
        "its start"
    )


def _count(found: list[Path]) -> str:
    return f"{len(found)} run{'s' if len(found) != 1 else ''}"


def _listing(found: list[Path], most: int = 10) -> str:
    names = ", ".join(p.name for p in found[:most])
    return names + (f" and {len(found) - most} more" if len(found) > most else "")
