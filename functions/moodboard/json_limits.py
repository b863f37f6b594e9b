"""How deeply untrusted JSON nests, measured before anything parses it.

`json.loads` recurses once per nested array or object and gives up with a RecursionError (an HTTP
500) somewhere near a thousand levels; every body and cursor this API accepts nests one or two. So
the request edge refuses deeper JSON with a clear error first (moodboard.http_errors for bodies,
moodboard.dynamo for cursors). The scan is linear and runs in C: strings are cut out with one
regex, the brackets kept with bytes.translate, and the running depth summed by itertools.accumulate;
a body with fewer opening brackets than the limit is not scanned at all.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (the API's own bodies have 1)."""

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text `raw` nests arrays or objects more than `limit` levels deep.

    Brackets inside strings do not count. `raw` need not be valid JSON: this only bounds the
    recursion a parser would need, and the parser still reports every other defect.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    steps = _STRINGS.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0) > limit
