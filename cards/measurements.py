"""Reading numeric Observations: UCUM unit conversion, plausibility, staleness (clinical-rules.md §1).

- Units are converted from UCUM codes; an unknown or missing unit is never guessed (the value is unusable).
- Implausible values are not used and are named on the data-quality card.
- "Current" means dated within ``current_days`` before now [derived, configurable]; the most recent usable value
  wins; an older one is shown as stale and never treated as current.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from . import terminology as t
from .record import PatientRecord, as_instant, observation_instant


@dataclass(frozen=True)
class Problem:
    """Something the data-quality card must name: what, what is wrong, and the evidence (no guessing)."""

    concept: str  # albumin, bilirubin, inr, ecog, afp, weight, lesion, medication, resource, fhir
    kind: str  # missing | stale | implausible | unknown-unit | unit-from-text | conflict | not-evaluated | invalid
    #            | undated | unreadable | unidentified
    detail: str


@dataclass(frozen=True)
class Measurement:
    value: float  # in the canonical unit of its concept
    date: date
    observation_id: str
    freshness: str  # current | stale
    instant: datetime | None = None


def freshness(when: date | datetime, now: date | datetime, current_days: int) -> str:
    """current | stale | future (dated after the evaluation time: not used, clinical-rules.md §1 "Time")."""
    moment = when if isinstance(when, datetime) else datetime.combine(when, time(), UTC)
    evaluated = as_instant(now)
    if moment > evaluated:
        return "future"
    return "current" if evaluated - moment <= timedelta(days=current_days) else "stale"


def finite(value: object) -> float | None:
    """A JSON number as a finite float (a 400-digit integer or NaN is not a measurement)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _unit_key(unit: str) -> str:
    """UCUM writes litre as ``L`` or ``l``: compare with the litre spelled one way."""
    return re.sub(r"(?<=/)l$|(?<=d)l$", "L", unit.strip())


def quantity_value(obs: dict, factors: Mapping[str, float]) -> tuple[float | None, str, bool]:
    """(value in canonical unit, unit as recorded, unit read from text). Value is None when the number is not
    finite or the unit is unknown or missing; the unit is never guessed (clinical-rules.md §1 "Units")."""
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None, "", False
    number = finite(quantity.get("value"))
    system, code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    label = str(code or unit or "")
    if number is None:
        return None, label, False
    keyed = {_unit_key(k): v for k, v in factors.items()}
    if system == t.UCUM and isinstance(code, str) and _unit_key(code) in keyed:
        return number * keyed[_unit_key(code)], label, False
    if "" in factors and not code and not unit:  # a dimensionless result (INR) recorded without a unit
        return number * factors[""], label, False
    if system in (None, ""):
        folded = {k.lower(): v for k, v in keyed.items()}
        for text in (code, unit):
            if isinstance(text, str) and _unit_key(text).lower() in folded:
                return number * folded[_unit_key(text).lower()], label, True
    return None, label, False


def latest_usable(
    record: PatientRecord,
    concept: str,
    codes: Iterable[str],
    factors: Mapping[str, float],
    plausible: tuple[float, float],
    now: date | datetime,
    current_days: int,
    unit_label: str,
    worse: int = 1,
) -> tuple[Measurement | None, list[Problem]]:
    """The most recent plausible value with a known unit, and the problems met on the way.

    Newer values that are implausible, undated, dated after ``now`` or in an unknown unit are skipped and named.
    Two usable values at the same instant that disagree: the worse counts (``worse`` = 1: higher is worse,
    -1: lower is worse) and the conflict is named (clinical-rules.md §1 "Time").
    """
    problems: list[Problem] = []
    low, high = plausible
    chosen: Measurement | None = None
    for obs in record.observations(codes):
        instant = observation_instant(obs)
        oid = str(obs.get("id", "?"))
        if chosen is not None and instant != chosen.instant:
            break
        if instant is None:
            problems.append(Problem(concept, "undated", f"{concept} result has no date"))
            continue
        when = instant.date()
        fresh = freshness(instant, now, current_days)
        if fresh == "future":
            problems.append(Problem(concept, "implausible", f"{concept} on {day(when)} is dated after the "
                                    "evaluation time: not used"))
            continue
        value, unit, from_text = quantity_value(obs, factors)
        if value is None:
            raw = (obs.get("valueQuantity") or {}).get("value") if isinstance(obs.get("valueQuantity"), dict) else None
            if raw is None and isinstance(obs.get("valueString"), str):
                problems.append(Problem(concept, "unreadable", f"{concept} on {day(when)} is recorded as text "
                                        f"('{obs['valueString'][:40]}'), not as a number with a unit: not read"))
            elif raw is None:
                absent = "value missing" if "dataAbsentReason" not in obs else "recorded as not available"
                problems.append(Problem(concept, "missing", f"{concept} on {day(when)} could not be read: {absent}"))
            elif finite(raw) is None:
                problems.append(Problem(concept, "implausible", f"{concept} on {day(when)} could not be read: "
                                        "the number is not a finite value"))
            else:
                problems.append(Problem(concept, "unknown-unit", f"{concept} on {day(when)} could not be read: "
                                        f"unit '{unit or 'none'}' is not a unit we can convert"))
            continue
        if not low <= value <= high:
            problems.append(Problem(concept, "implausible", f"{concept} on {day(when)} is {value:g} {unit_label}, "
                                    f"outside the plausible {low:g}–{high:g} {unit_label}: not used"))
            continue
        if from_text:
            problems.append(Problem(concept, "unit-from-text", f"{concept} on {day(when)}: unit read from text "
                                    f"('{unit}')"))
        candidate = Measurement(value, when, oid, fresh, instant)
        if chosen is None:
            chosen = candidate
        elif abs(candidate.value - chosen.value) > 1e-9:
            if (candidate.value - chosen.value) * worse > 0:
                chosen, other = candidate, chosen
            else:
                other = candidate
            problems.append(Problem(concept, "conflict", f"{concept} recorded twice at the same time on "
                                    f"{day(when)} ({other.value:g} and {chosen.value:g} {unit_label}): the worse, "
                                    f"{chosen.value:g}, is used"))
    if chosen is not None:
        if chosen.freshness == "stale":
            problems.append(Problem(concept, "stale", f"latest {concept} is from {day(chosen.date)}, older than "
                                    f"{current_days} days"))
        return chosen, problems
    if not any(p.kind in {"implausible", "unknown-unit"} for p in problems):
        problems.append(Problem(concept, "missing", f"no {concept} result in the record"))
    return None, problems


def plural(count: int, noun: str) -> str:
    """"1 lesion", "2 lesions" (clinical-rules.md §5: plurals are words)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def day(value: date) -> str:
    """A date as clinicians read it on a card: 2 Nov 2026."""
    return f"{value.day} {value:%b %Y}"
