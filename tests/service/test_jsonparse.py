"""service.jsonparse: orjson's speed with the standard library's answers.

Every document either parser refuses must be answered exactly as ``json.loads`` answers it (accepted with the
same value, or the same exception type), because request validation and the lone-surrogate check read what
comes back. The one documented difference, an integer beyond 64 bits arriving as a float, must not change a card.
"""

from __future__ import annotations

import copy
import json
import math

import pytest

from cards.patient_view import evaluate
from service.jsonparse import loads
from tests.service.support import evaluated_at, fixture_request

SAME_AS_STDLIB = [
    b'{"a": 1, "a": 2}',  # duplicate member: the last wins
    b'{"x": [1, 2.5, -0, 1e2, true, null, "\\u00e9\\ud83d\\ude00"]}',
    b'"\\ud800"',  # lone surrogate: orjson refuses, json accepts (body.py then refuses with its own message)
    b'"\xed\xa0\x80"',  # its raw UTF-8-style bytes: json refuses as well
    b"NaN", b"[Infinity, -Infinity]", b"[1e400]",  # json accepts these
    "[1, 2]".encode("utf-16"),  # json detects UTF-16
    b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark: json refuses
    b"{", b"", b"[1,]", b"{'a': 1}",  # not JSON
    b"9223372036854775807", b"18446744073709551615",  # within 64 bits: ints
]


@pytest.mark.parametrize("document", SAME_AS_STDLIB)
def test_answers_as_the_standard_library(document: bytes) -> None:
    try:
        expected: object = json.loads(document)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            loads(document)
        return
    got = loads(document)
    assert repr(got) == repr(expected)  # repr: nan == nan is False, and 1 must not become 1.0


def test_deep_nesting_is_a_recursion_error_as_in_json() -> None:
    with pytest.raises(RecursionError):
        json.loads(b"[" * 100_000)
    with pytest.raises(RecursionError):
        loads(b"[" * 100_000)


def test_an_integer_beyond_64_bits_is_a_float_and_changes_no_card() -> None:
    assert loads(b"18446744073709551616") == float(2**64)
    request = fixture_request("systemic-atezo-bev")
    entries = request["prefetch"]["observations"]["entry"]
    albumin = _latest_albumin(entries)
    albumin["valueQuantity"]["value"] = "@@"  # placeholder for the raw number below
    document = json.dumps(request).replace('"@@"', "1" + "0" * 25).encode()
    now = evaluated_at(request)
    patient_id = request["context"]["patientId"]

    def cards(parsed: dict) -> list[dict]:
        resources = [e["resource"] for key in ("patient", "conditions", "observations", "medicationStatements",
                                                "medicationRequests", "medicationAdministrations")
                     for e in _entries(parsed["prefetch"].get(key))]
        return evaluate(resources, now, patient_id).cards

    with_stdlib, with_loads = json.loads(document), loads(document)
    assert isinstance(_albumin(with_stdlib), int) and isinstance(_albumin(with_loads), float)
    assert math.isclose(_albumin(with_loads), 1e25)
    expected = cards(copy.deepcopy(with_stdlib))
    assert _texts(cards(with_loads)) == _texts(expected)
    assert "albumin" in " ".join(_texts(expected)).lower()  # named on the data-quality card, not silently used


def _entries(value: dict | None) -> list[dict]:
    if not value:
        return []
    return value.get("entry", []) if value.get("resourceType") == "Bundle" else [{"resource": value}]


def _latest_albumin(entries: list[dict]) -> dict:
    return max((e["resource"] for e in entries if e["resource"]["code"]["coding"][0]["code"] == "1751-7"),
               key=lambda o: o["effectiveDateTime"])


def _albumin(request: dict) -> object:
    return _latest_albumin(request["prefetch"]["observations"]["entry"])["valueQuantity"]["value"]


def _texts(cards: list[dict]) -> list[str]:
    return [card["summary"] + "\n" + card.get("detail", "") for card in cards]
