"""The nesting-depth check run on request bodies and cursors before they are parsed."""

from __future__ import annotations

import json

import pytest
from moodboard.json_limits import MAX_JSON_DEPTH, too_deep


def nested(depth: int) -> bytes:
    """JSON nesting `depth` levels, objects and arrays in turn."""
    opening = b"".join(b'{"a":' if level % 2 == 0 else b"[" for level in range(depth))
    closing = b"".join(b"}" if level % 2 == 0 else b"]" for level in reversed(range(depth)))
    return opening + b"1" + closing


@pytest.mark.parametrize("depth", [0, 1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_json_up_to_the_limit_is_not_too_deep(depth: int) -> None:
    raw = nested(depth)
    json.loads(raw)  # the fixture is the JSON it claims to be
    assert not too_deep(raw)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_json_over_the_limit_is_too_deep(depth: int) -> None:
    assert too_deep(nested(depth))
    assert too_deep(b"[" * depth)  # unterminated: the parser would still recurse that far first


@pytest.mark.parametrize("raw", [
    b'["' + b"[" * 500 + b'"]',  # brackets inside a string
    b'["\\"' + b"[" * 500 + b'"]',  # ... after an escaped quote
    b'{"k": "\\\\", "v": "' + b"{" * 500 + b'"}',  # ... after an escaped backslash that ends a string
    b"[" + b"[]," * 10_000 + b"[]]",  # wide, not deep
])
def test_brackets_in_strings_and_wide_json_are_not_too_deep(raw: bytes) -> None:
    json.loads(raw)
    assert not too_deep(raw)


def test_a_string_cannot_hide_real_nesting() -> None:
    raw = b'["\\\\", ' + b"[" * 500 + b"]" * 500 + b"]"  # the string is one backslash; the brackets are real
    json.loads(raw)
    assert too_deep(raw)


def test_custom_limit() -> None:
    assert not too_deep(b'{"a": {"S": "x"}}', 2)
    assert too_deep(b'{"a": {"S": ["x"]}}', 2)
