"""Parsing JSON bytes: orjson for speed, the standard library's answer for everything orjson refuses.

A 1.2 MB request (2,000 Observations) parses in ~5 ms with orjson and ~10 ms with ``json``; the FHIR client parses
every page it reads. What orjson refuses (NaN and Infinity, a lone UTF-16 surrogate, UTF-16/32 text, nesting
deeper than 1,024 levels, numbers beyond a double) goes to ``json.loads``, so what is accepted and what raises
stay as the standard library decides (``ValueError``, or ``RecursionError`` for deep nesting). A lone surrogate,
which ``json.loads`` accepts, is refused on request (``refuse_lone_surrogates``: the request body, body.py).

Two differences remain, both tested (tests/service/test_jsonparse.py, test_record_and_json_review.py): an
integer outside the 64-bit range arrives as a float, not an int (no value the rules read is that large, and the
reading layer names it as implausible either way); and nesting between ~1,000 levels (where ``json.loads`` hits
the recursion limit) and orjson's 1,024 is parsed (nothing in the service recurses over it: such a request is
answered normally).
"""

from __future__ import annotations

import json
import re

import orjson


class LoneSurrogate(ValueError):
    """The document holds a lone UTF-16 surrogate (``"\\ud800"``, or its raw bytes): not a Unicode character
    (RFC 8259 §8.2). ``json.loads`` accepts one, but it cannot be encoded again."""


def loads(data: bytes | bytearray | str, *, refuse_lone_surrogates: bool = False) -> object:
    """The parsed document; ValueError (json.JSONDecodeError) or RecursionError as ``json.loads`` raises them, and
    :class:`LoneSurrogate` when asked to refuse one (what orjson accepts never holds one: it refuses them)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    parsed = json.loads(data)
    if refuse_lone_surrogates and _may_hold_surrogate(data) and _has_lone_surrogate(parsed):
        raise LoneSurrogate("lone UTF-16 surrogate")
    return parsed


# A \uD800-\uDFFF escape, or the UTF-8-style bytes of a surrogate (ED A0..BF xx). Both are rare in real requests
# (emoji arrive as raw UTF-8), so the full check below runs only when this finds one.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _has_lone_surrogate(value: object) -> bool:
    """True when any string (or member name) in the parsed document cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _may_hold_surrogate(data: bytes | bytearray | str) -> bool:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return _MAYBE_SURROGATE.search(raw) is not None
