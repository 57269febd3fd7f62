"""The nesting bound: depth counts arrays and objects, never brackets in strings."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import InvalidFieldError, MessageDecodeError, TooDeeplyNestedError
from events.wire.nesting import MAX_DEPTH, check_depth, nesting_depth


def nested(depth: int, *, inner: bytes = b"") -> bytes:
    """An object holding ``depth - 1`` nested arrays: ``depth`` levels in all."""
    return b'{"x":' + b"[" * (depth - 1) + inner + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"", 0),
        (b"42", 0),
        (b'"[[[{{{"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": {}}', 4),
        (b'{"a": "]]]]", "b": [[1]]}', 3),
        (b'{"a": "[[[[", "b": [[1]]}', 3),
        # An escaped quote does not end the string; its brackets stay inside.
        (rb'{"a": "\"[[[[\"", "b": []}', 2),
        # An escaped backslash does not escape the quote after it.
        (rb'{"a": "\\", "b": [[[]]]}', 4),
        (rb'{"a": "\\\"[[", "b": [[[]]]}', 4),
        (rb'{"a": "\\\\", "b": "\\\\\\\"[[[", "c": [[]]}', 3),
        (rb'["\u005b\u005b\u005b"]', 1),
        (b'{"k[": {"k{": ["v]", "v}"]}}', 3),
        # Unclosed brackets count: a decoder recurses into them first.
        (b"[[[[", 4),
        (b'{"a": [[', 3),
        # An unterminated string hides the rest of the document.
        (b'[[ "abc [[[[', 2),
        # Closers first: no decoder gets past the first one.
        (b"]]]][[", 0),
    ],
)
def test_depth_ignores_strings_and_honours_escapes(raw: bytes, depth: int) -> None:
    assert nesting_depth(raw) == depth


def test_depth_agrees_with_json_on_strings_full_of_brackets() -> None:
    value = {
        "a": ["[", "]]", {"b": '{\\"[', "c": ['\\"]]', {"d": []}]}],
        "e": "\\\\[[",
    }
    raw = json.dumps(value).encode()
    assert nesting_depth(raw) == 6
    check_depth(raw, 6)
    with pytest.raises(TooDeeplyNestedError):
        check_depth(raw, 5)


def test_exactly_at_the_limit_passes_and_one_over_is_refused() -> None:
    check_depth(nested(MAX_DEPTH))
    with pytest.raises(TooDeeplyNestedError) as caught:
        check_depth(nested(MAX_DEPTH + 1))
    error = caught.value
    assert (error.depth, error.limit) == (MAX_DEPTH + 1, MAX_DEPTH)
    assert error.raw == nested(MAX_DEPTH + 1)
    assert f"limit of {MAX_DEPTH} levels" in str(error)
    assert "refused before decoding" in str(error)
    # Typed like every decode failure: the guards that dead-letter catch it.
    assert isinstance(error, InvalidFieldError)
    assert isinstance(error, MessageDecodeError)


def test_many_brackets_in_strings_do_not_count() -> None:
    raw = b'{"x": "' + b"[" * 5_000 + b'", "y": [' + b"{}," * 500 + b"{}]}"
    check_depth(raw)
    assert nesting_depth(raw) == 3


def test_five_thousand_deep_is_refused_by_its_depth() -> None:
    raw = nested(5_001)
    assert nesting_depth(raw) == 5_001
    with pytest.raises(TooDeeplyNestedError, match="nesting depth 5001"):
        check_depth(raw)


def test_a_lower_limit() -> None:
    check_depth(b"[[]]", 2)
    with pytest.raises(TooDeeplyNestedError):
        check_depth(b"[[[]]]", 2)


# Strings made mostly of what could fool a scanner: brackets, quotes, escapes.
_tricky = st.text(st.sampled_from('[]{}"\\/ ab\u00e9\U0001f600\n'), max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_tricky, inner, max_size=4)
    ),
    max_leaves=30,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


@settings(derandomize=True, max_examples=500, deadline=None)
@given(_values)
def test_depth_matches_the_structure_however_it_is_encoded(value: Any) -> None:
    depth = reference_depth(value)
    assert nesting_depth(json.dumps(value).encode()) == depth
    assert nesting_depth(json.dumps(value, ensure_ascii=False).encode()) == depth
    assert nesting_depth(msgspec.json.encode(value)) == depth
