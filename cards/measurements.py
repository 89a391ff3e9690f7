"""Reading numeric Observations: UCUM unit conversion, plausibility, staleness (clinical-rules.md §1).

- Units are converted from UCUM codes; an unknown or missing unit is never guessed (the value is unusable).
- Implausible values are not used and are named on the data-quality card.
- "Current" means dated within ``current_days`` before now [derived, configurable]; the most recent usable value
  wins; an older one is shown as stale and never treated as current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from . import terminology as t
from .record import PatientRecord, observation_date


@dataclass(frozen=True)
class Problem:
    """Something the data-quality card must name: what, what is wrong, and the evidence (no guessing)."""

    concept: str  # albumin, bilirubin, ecog, afp, weight, lesion, medication, resource, fhir
    kind: str  # missing | stale | implausible | unknown-unit | not-evaluated | invalid | undated | unreadable
    detail: str


@dataclass(frozen=True)
class Measurement:
    value: float  # in the canonical unit of its concept
    date: date
    observation_id: str
    freshness: str  # current | stale


def freshness(when: date, now: date, current_days: int) -> str:
    """current | stale | future (more than a day ahead of now: the date itself is implausible)."""
    age = (now - when).days
    if age < -1:
        return "future"
    return "current" if age <= current_days else "stale"


def quantity_value(obs: dict, factors: Mapping[str, float]) -> tuple[float | None, str]:
    """(value in canonical unit, unit as recorded). Value is None when the unit is unknown or missing."""
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None, ""
    code = quantity.get("code") if quantity.get("system") in (None, t.UCUM) else None
    label = str(code or quantity.get("unit") or "")
    for candidate in (code, quantity.get("unit")):
        if isinstance(candidate, str) and candidate in factors:
            return float(quantity["value"]) * factors[candidate], label
    return None, label


def latest_usable(
    record: PatientRecord,
    concept: str,
    codes: Iterable[str],
    factors: Mapping[str, float],
    plausible: tuple[float, float],
    now: date,
    current_days: int,
    unit_label: str,
) -> tuple[Measurement | None, list[Problem]]:
    """The most recent plausible value with a known unit, and the problems met on the way.

    Newer values that are implausible, undated, future-dated or in an unknown unit are skipped and reported.
    """
    problems: list[Problem] = []
    low, high = plausible
    for obs in record.observations(codes):
        when = observation_date(obs)
        oid = str(obs.get("id", "?"))
        if when is None:
            problems.append(Problem(concept, "undated", f"Observation/{oid} has no date"))
            continue
        fresh = freshness(when, now, current_days)
        if fresh == "future":
            problems.append(Problem(concept, "implausible", f"Observation/{oid} is dated in the future ({when})"))
            continue
        value, unit = quantity_value(obs, factors)
        if value is None:
            raw = (obs.get("valueQuantity") or {}).get("value") if isinstance(obs.get("valueQuantity"), dict) else None
            if raw is None:
                problems.append(Problem(concept, "missing", f"Observation/{oid} ({when}) has no numeric value"))
            else:
                problems.append(Problem(concept, "unknown-unit",
                                        f"Observation/{oid} ({when}): unit '{unit or 'none'}' is not a known unit"))
            continue
        if not low <= value <= high:
            problems.append(Problem(concept, "implausible",
                                    f"Observation/{oid} ({when}): {value:g} {unit_label} is outside "
                                    f"{low:g}–{high:g} {unit_label}"))
            continue
        measurement = Measurement(value, when, oid, fresh)
        if fresh == "stale":
            problems.append(Problem(concept, "stale", f"latest value is from {when} (older than {current_days} days)"))
        return measurement, problems
    if not any(p.kind in {"implausible", "unknown-unit"} for p in problems):
        problems.append(Problem(concept, "missing", "no result in the record"))
    return None, problems
