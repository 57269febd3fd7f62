"""A wall clock that steps, for the processes of a scenario: ``wallstep.c``
built into a library to preload, and the dial that steps it."""

from __future__ import annotations

import mmap
import shutil
import struct
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("wallstep.c")

#: How the offset is kept in the file the library maps: nanoseconds, int64.
_OFFSET = struct.Struct("=q")


def build(directory: Path) -> Path:
    """Compile the library into ``directory``; its path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the clock-jump test builds wallstep.c: install a C compiler (gcc)"
    library = directory / "libwallstep.so"
    flags = ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-pthread"]
    built = subprocess.run(
        [compiler, *flags, "-o", str(library), str(SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"{SOURCE.name} did not build:\n{built.stderr}"
    return library


class WallStep:
    """The offset every preloaded process adds to its wall clock; it starts at
    zero. Create it before starting them: they map the file when they start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(bytes(_OFFSET.size))
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), _OFFSET.size)

    def step_to(self, seconds: float) -> None:
        """Put the wall clock ``seconds`` off the true time (at once, in every
        process)."""
        _OFFSET.pack_into(self._map, 0, round(seconds * 1e9))

    def close(self) -> None:
        self._map.close()
