"""Hostile JSON for the decoder fuzz tests: what a stranger could put on a topic.

:func:`documents` draws random bytes, or one of the given valid documents made
wrong: mutated bytes, a field holding a deep nesting, a huge number or odd
unicode, the document truncated. A field is replaced by writing the new value
right after its key and moving the old value under a new key, so the rest of
the document stays valid and the decoder gets as far as the bad part.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

HUGE_NUMBERS = (
    b"1" * 5_000,
    b"-" + b"9" * 400,
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e999999",
    b"-1E400",
    b"0." + b"0" * 5_000 + b"1",
    b"1e-999999",
    b"123456789" * 600 + b".5e7",
)
ODD_STRINGS = (
    rb'"\ud800"',
    rb'"\udc00\ud800"',
    rb'"\ud800\u0041"',
    rb'"\uDFFF"',
    rb'"\u0000\u001f"',
    rb'"\uffff\ufffe"',
    b'"\xed\xa0\x80"',  # a surrogate in UTF-8: not valid UTF-8
    b'"\xc0\x80"',  # an overlong NUL
    b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
    b'"\xff\xfe"',
    b'"\xe2\x82"',  # truncated sequence
    '"\ufeff\u202e\U0001f600"'.encode(),
    rb'"\x"',
    rb'"\u12"',
)


def _keys(doc: bytes) -> list[int]:
    """Offsets just after each ``":`` (where a field's value starts)."""
    found, at = [], doc.find(b'":')
    while at != -1:
        found.append(at + 2)
        at = doc.find(b'":', at + 2)
    return found


def _replace_value(doc: bytes, which: int, value: bytes) -> bytes:
    keys = _keys(doc)
    if not keys:
        return value
    at = keys[which % len(keys)]
    return doc[:at] + value + b',"zzOld":' + doc[at:]


def _nesting(depth: int, shape: int, closed: bool) -> bytes:
    opener, closer, inner = [
        (b"[", b"]", b""),
        (b'{"a":', b"}", b"1"),
        (b'[{"a":', b"}]", b"[]"),
    ][shape]
    return opener * depth + inner + (closer * depth if closed else b"")


def _mutate(doc: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for position, kind, data in edits:
        at = position % (len(doc) + 1)
        if kind == 0:  # overwrite
            doc = doc[:at] + data + doc[at + len(data) :]
        elif kind == 1:  # insert
            doc = doc[:at] + data + doc[at:]
        elif kind == 2:  # delete
            doc = doc[:at] + doc[at + len(data) + 1 :]
        elif kind == 3:  # duplicate a slice
            doc = doc[:at] + doc[at : at + 16] + doc[at:]
        else:  # truncate
            doc = doc[:at]
    return doc


def documents(valid: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Random and damaged variants of ``valid`` (plus ``valid`` itself)."""
    base = st.sampled_from(list(valid))
    which = st.integers(0, 1_000)

    def replaced(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        return st.builds(_replace_value, base, which, values)

    nested = st.builds(
        _nesting, st.integers(1, 6_000), st.integers(0, 2), st.booleans()
    )
    edits = st.lists(
        st.tuples(st.integers(0, 100_000), st.integers(0, 4), st.binary(max_size=8)),
        min_size=1,
        max_size=4,
    )
    strategies: list[st.SearchStrategy[bytes]] = [
        base,
        st.binary(max_size=300),
        st.builds(_mutate, base, edits),
        replaced(nested),
        nested,
        replaced(st.sampled_from(HUGE_NUMBERS)),
        replaced(st.sampled_from(ODD_STRINGS)),
        replaced(st.sampled_from(ODD_STRINGS).map(lambda s: b"{" + s + b":1}")),
        st.builds(lambda b: b"\xef\xbb\xbf" + b, base),  # a byte-order mark
    ]
    return st.one_of(strategies)
