"""JSON Schema validation of CDS Hooks 2.0 messages (schemas in ``service/schemas/``).

The schemas are derived from the CDS Hooks 2.0 text (https://cds-hooks.hl7.org/2.0/): §Discovery
(``#response``), §Calling a CDS Service (``#http-request_1``) with the CDS Hooks Library 1.0.1 contexts,
§CDS Service Response (``#card-attributes`` … ``#system-action``) and §Feedback (``#feedback``).
Error messages name a JSON path and the problem; they never contain tokens and echo only short
controlled-vocabulary values, so they are safe to return to the caller and to log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

__all__ = [
    "discovery_errors",
    "feedback_errors",
    "json_path",
    "null_or_empty_paths",
    "request_errors",
    "response_errors",
]

_MAX_ECHO = 60  # longest value or member name ever echoed in a message
_MAX_ERRORS = 50  # messages returned per document (plus one "… more" line)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
# Members whose subtree is never echoed (CDS Hooks 2.0 §Passing the Access Token: a transient secret).
_SECRET_MEMBERS = frozenset({"fhirAuthorization", "access_token"})

_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 §5.6 date-time (without needing the optional ``rfc3339-validator`` package)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(re.sub(r"\.\d+", "", value.upper().replace("Z", "+00:00")))
    return True


@_FORMATS.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    """An absolute URI: a scheme and no whitespace (without needing the optional ``rfc3987`` package)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and not any(c.isspace() for c in value)


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """Compile a schema ``pattern`` so that a final ``$`` means end of input, as in ECMA-262.

    Python's ``$`` also matches before a trailing newline, which would let ``"id\\n"`` pass ``^…$``.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Validator, pattern: str, instance: object, schema: dict) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _ecma_regex(pattern).search(instance):
        yield ValidationError("does not match the pattern")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def _load(name: str) -> Validator:
    schema = json.loads(files("service").joinpath("schemas").joinpath(name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return _Validator(schema, format_checker=_FORMATS)


_REQUEST = _load("hook-request.schema.json")
_RESPONSE = _load("hook-response.schema.json")
_DISCOVERY = _load("discovery-response.schema.json")
_FEEDBACK = _load("feedback-request.schema.json")


def _quote(text: str) -> str:
    return json.dumps(text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "…", ensure_ascii=False)


def json_path(parts: Sequence[str | int]) -> str:
    """Render a path as JSONPath, e.g. ``$.cards[0].summary`` or ``$.prefetch["my key"]``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += f"[{_quote(part)}]"
    return out


def _names(names: Any) -> str:
    return ", ".join(_quote(str(name)) for name in names)


def _problem(error: ValidationError) -> str:
    """Describe one error from the schema side only; the instance is echoed only for enum/const misses."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("description")
    if "propertyNames" in error.relative_schema_path:
        return "member names must not be empty"
    if keyword == "required":
        missing = [name for name in expected if isinstance(instance, dict) and name not in instance]
        return f"missing required member {_names(missing)}"
    if keyword == "dependentRequired":
        pairs = [(name, [d for d in deps if d not in instance]) for name, deps in expected.items()
                 if isinstance(instance, dict) and name in instance]
        return "; ".join(f"{_names(missing)} is required when {_quote(name)} is present"
                         for name, missing in pairs if missing)
    if keyword == "additionalProperties":
        allowed = schema.get("properties", {})
        extra = [key for key in instance if key not in allowed] if isinstance(instance, dict) else []
        return f"unexpected member {_names(extra)}"
    if keyword == "type":
        return "expected " + (" or ".join(expected) if isinstance(expected, list) else str(expected))
    if keyword in ("enum", "const"):
        options = expected if keyword == "enum" else [expected]
        got = ""
        if isinstance(instance, str | int | float) and not _SECRET_MEMBERS & set(map(str, error.path)):
            got = f" (got {_quote(str(instance))})"
        return f"must be {'one of ' if keyword == 'enum' else ''}{_names(options)}{got}"
    if keyword in ("minLength", "minItems", "minProperties"):
        return "must not be empty" if expected == 1 else f"must have at least {expected} {_unit(keyword)}"
    if keyword in ("maxLength", "maxItems"):
        size = len(instance) if isinstance(instance, str | list) else "?"
        return f"must have at most {expected} {_unit(keyword)} (has {size})"
    if keyword == "format":
        return f"is not a valid {expected}"
    if keyword == "not":
        return (expected.get("description") if isinstance(expected, dict) else None) or "is not allowed"
    if keyword == "pattern":
        return f"must be {hint}" if hint else "has an invalid format"
    return hint or f"fails the {keyword} rule"


def _unit(keyword: str) -> str:
    return {"Length": "characters", "Items": "items", "Properties": "members"}[keyword[3:]]


def _messages(validator: Validator, body: object) -> list[str]:
    try:
        found = [(json_path(list(e.absolute_path)), e.validator, e) for e in validator.iter_errors(body)]
        # A failed "format" adds nothing where the same value also failed a more specific keyword.
        specific = {path for path, keyword, _ in found if keyword != "format"}
        pairs = sorted({(path, _problem(e)) for path, keyword, e in found
                        if keyword != "format" or path not in specific})
    except RecursionError:
        return ["$: document is nested too deeply"]
    lines = [f"{path}: {problem}" for path, problem in pairs]
    if len(lines) > _MAX_ERRORS:
        lines = [*lines[:_MAX_ERRORS], f"… and {len(lines) - _MAX_ERRORS} more errors"]
    return lines


def request_errors(body: object) -> list[str]:
    """Problems of a hook request (CDS Hooks 2.0 §Calling a CDS Service, §Passing the Access Token,
    CDS Hooks Library 1.0.1 patient-view/order-select/order-sign contexts); ``[]`` when valid."""
    return _messages(_REQUEST, body)


def response_errors(body: object) -> list[str]:
    """Problems of a service response against the strict card profile (CDS Hooks 2.0 §CDS Service
    Response, §Card attributes, §Suggestion, §Action, §Link, §System Action); ``[]`` when valid."""
    return _messages(_RESPONSE, body)


def discovery_errors(body: object) -> list[str]:
    """Problems of a discovery document (CDS Hooks 2.0 §Discovery, §Prefetch tokens); ``[]`` when valid."""
    return _messages(_DISCOVERY, body)


def feedback_errors(body: object) -> list[str]:
    """Problems of a feedback request (CDS Hooks 2.0 §Feedback, §Override reason); ``[]`` when valid."""
    return _messages(_FEEDBACK, body)


def _is_null_or_empty(value: object) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def null_or_empty_paths(obj: object) -> list[str]:
    """JSON paths of every ``null``, ``""``, ``[]`` and ``{}`` (CDS Hooks 2.0 §Use of JSON: no null or empty
    members unless specified).

    Allowed, as the specification says: a top-level ``cards: []`` or ``services: []`` and top-level
    ``prefetch`` values of ``null`` (request side). Values of ``extension`` members are not searched
    (§Extensions: their content is defined by the extension, e.g. ``hcc-cds.recommendation`` carries
    ``null`` for unknown values), but an ``extension`` that is itself null or empty is reported.
    """
    found: list[str] = []
    stack: list[tuple[object, list[str | int]]] = [(obj, [])]
    while stack:
        node, parts = stack.pop()
        if _is_null_or_empty(node):
            found.append(json_path(parts))
            continue
        children: list[tuple[object, list[str | int]]] = []
        if isinstance(node, dict):
            for key, value in node.items():
                top = not parts
                if top and key in ("cards", "services") and value == []:
                    continue
                if len(parts) == 1 and parts[0] == "prefetch" and value is None:
                    continue
                if key == "extension" and not _is_null_or_empty(value):
                    continue
                children.append((value, [*parts, key]))
        elif isinstance(node, list):
            children = [(value, [*parts, index]) for index, value in enumerate(node)]
        stack.extend(reversed(children))
    return found
