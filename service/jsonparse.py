"""Parsing JSON bytes: orjson for speed, the standard library's answer for everything orjson refuses.

A 1.2 MB request (2,000 Observations) parses in ~5 ms with orjson and ~10 ms with ``json``; the FHIR client parses
every page it reads. What orjson refuses (NaN and Infinity, a lone UTF-16 surrogate, UTF-16/32 text, nesting
deeper than 1,024 levels, numbers beyond a double) goes to ``json.loads``, so what is accepted and what raises
stay as the standard library decides (``ValueError``, or ``RecursionError`` for deep nesting), and the callers'
checks after parsing (a lone surrogate, service/body.py) see the same values. Two differences remain, both
tested (tests/service/test_jsonparse.py, test_record_and_json_review.py): an integer outside the 64-bit range
arrives as a float, not an int (no value the rules read is that large, and the reading layer names it as
implausible either way); and nesting between ~1,000 levels (where ``json.loads`` hits the recursion limit) and
orjson's 1,024 is parsed (nothing in the service recurses over it: such a request is answered normally).
"""

from __future__ import annotations

import json

import orjson

# The fast parser alone, for a caller that checks the standard library's answer itself (service/body.py). What it
# accepts holds no lone surrogate: it refuses one escaped ("\\ud800") or as raw bytes.
fast_loads = orjson.loads
FastDecodeError = orjson.JSONDecodeError


def loads(data: bytes | bytearray | str) -> object:
    """The parsed document; ValueError (json.JSONDecodeError) or RecursionError as ``json.loads`` raises them."""
    try:
        return fast_loads(data)
    except FastDecodeError:
        return json.loads(data)
