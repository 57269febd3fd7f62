"""A bound on how deeply a JSON document nests, checked before it is decoded.

msgspec decodes nested arrays and objects by recursion and, past Python's
recursion limit, raises ``RecursionError`` rather than a decode error: a 4 KB
document of brackets would escape every guard that expects a typed error. No
message of the platform nests anywhere near :data:`MAX_DEPTH`, so anything
deeper is refused before a decoder sees it.
"""

from __future__ import annotations

import itertools
from typing import Final

from events.errors import TooDeeplyNestedError

#: The deepest nesting of arrays and objects a message may have (the document
#: itself is level 1).
MAX_DEPTH: Final = 64

_NOT_MARKS: Final = bytes(b for b in range(256) if b not in b'"[]{}')
# Openers to 1 and closers to -1 (255 read as a signed byte), so a running sum
# is the depth at each bracket.
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (0 for none).

    Brackets inside strings do not count; unclosed brackets do, since a decoder
    recurses into them before it finds the document truncated.
    """
    # Each step is a C-speed pass: no Python loop per byte or per string.
    if b"\\" in raw:
        # Escaped backslashes first, so that a backslash left before a quote
        # escapes it; with both gone, every quote left delimits a string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Dropping two adjacent quotes leaves the parity of the quotes before every
    # bracket as it was; what stays is the quotes around brackets in strings.
    marks = raw.translate(None, _NOT_MARKS).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])  # the parts outside strings
    if not marks:
        return 0
    steps = memoryview(marks.translate(_STEPS)).cast("b")
    return max(max(itertools.accumulate(steps)), 0)


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`~events.errors.TooDeeplyNestedError` if ``raw`` nests
    deeper than ``limit``."""
    # Fewer brackets than the limit cannot nest past it, strings or not: the
    # common case costs two C-speed counts.
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    depth = nesting_depth(raw)
    if depth > limit:
        raise TooDeeplyNestedError(depth, limit, raw)
