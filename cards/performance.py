"""Performance status: ECOG, else Karnofsky mapped to ECOG (clinical-rules.md §1–§2; clinical-codes.md §2.3–2.4).

ECOG 89247-1 from ``valueInteger``, a LOINC LL529-9 answer or a SNOMED grade concept (in the value or the
interpretation). Karnofsky 89243-0 mapped with the standard (oBDS/MII) table: 90–100→0, 70–80→1, 50–60→2,
30–40→3, 10–20→4, 0→5. The most recent current ECOG wins; else the most recent current Karnofsky (and we say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from . import terminology as t
from .measurements import Problem, day, freshness
from .record import PatientRecord, codings, observation_instant


def karnofsky_to_ecog(kps: int) -> int:
    """Standard mapping (clinical-codes.md §2.4, recommendation: the first)."""
    if kps >= 90:
        return 0
    if kps >= 70:
        return 1
    if kps >= 50:
        return 2
    if kps >= 30:
        return 3
    if kps >= 10:
        return 4
    return 5


@dataclass(frozen=True)
class PerformanceStatus:
    status: str  # current | stale | missing | implausible
    value: int | None = None  # ECOG grade
    source: str | None = None  # ecog | karnofsky
    karnofsky: int | None = None
    date: date | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def current_value(self) -> int | None:
        return self.value if self.status == "current" else None


def _coded(obs: dict, answers: dict[str, int]) -> int | None:
    for element in (obs.get("valueCodeableConcept"), obs.get("interpretation")):
        for _system, code in codings(element):
            if code in answers:
                return answers[code]
    return None


def score_value(obs: dict, answers: dict[str, int]) -> int | float | None:
    """The score from valueInteger, valueQuantity, or a coded answer in the value or interpretation."""
    value = obs.get("valueInteger")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return quantity["value"]
    return _coded(obs, answers)


def _readings(record: PatientRecord, now: date | datetime, current_days: int,
              source: str) -> tuple[list, list[Problem]]:
    """The newest plausible reading [(ecog, kps, date, freshness)] (or none), and the problems met before it.

    Readings are ordered by full instant; two at the same instant that disagree: the higher ECOG counts and the
    conflict is named (clinical-rules.md §1 "Time")."""
    code, answers = ((t.ECOG, {**t.ECOG_LOINC_ANSWERS, **t.ECOG_SNOMED_ANSWERS}) if source == "ecog"
                     else (t.KARNOFSKY, t.KARNOFSKY_LOINC_ANSWERS))
    name = "ECOG" if source == "ecog" else "Karnofsky"
    readings: list = []
    problems: list[Problem] = []
    chosen_at = None
    for obs in record.observations({code}):
        instant = observation_instant(obs)
        if chosen_at is not None and instant != chosen_at:
            break
        value = score_value(obs, answers)
        if instant is None:
            problems.append(Problem("ecog", "undated", f"{name} result has no date: not used"))
            continue
        when = instant.date()
        fresh = freshness(instant, now, current_days)
        if value is None:
            problems.append(Problem("ecog", "unreadable", f"{name} on {day(when)} could not be read: no usable value"))
            continue
        if source == "ecog":
            ok = float(value).is_integer() and 0 <= value <= 5
        else:
            ok = float(value).is_integer() and 0 <= value <= 100 and int(value) % 10 == 0
        if not ok or fresh == "future":
            problems.append(Problem("ecog", "implausible", f"{name} on {day(when)} "
                                    + ("is dated after the evaluation time: not used" if ok
                                       else f"is {value}, not a valid score: not used")))
            continue
        ecog = int(value) if source == "ecog" else karnofsky_to_ecog(int(value))
        reading = (ecog, int(value) if source == "karnofsky" else None, when, fresh)
        if not readings:
            readings.append(reading)
            chosen_at = instant
        elif reading[0] != readings[0][0]:
            low, high = sorted((reading[0], readings[0][0]))
            problems.append(Problem("ecog", "conflict", f"{name} recorded as {low} and {high} at the same time on "
                                    f"{day(when)}: the worse, ECOG {high}, is used"))
            if reading[0] > readings[0][0]:
                readings[0] = reading
    return readings, problems


def assess_performance(record: PatientRecord, now: date | datetime, current_days: int) -> PerformanceStatus:
    ecog, ecog_problems = _readings(record, now, current_days, "ecog")
    kps, kps_problems = _readings(record, now, current_days, "karnofsky")
    problems = tuple(ecog_problems + kps_problems)
    for source, readings in (("ecog", ecog), ("karnofsky", kps)):
        if readings and readings[0][3] == "current":
            value, karnofsky, when, _ = readings[0]
            return PerformanceStatus("current", value, source, karnofsky, when, problems)
    latest = [(r, s) for s, rs in (("ecog", ecog), ("karnofsky", kps)) for r in rs[:1]]
    if latest:
        (value, karnofsky, when, _), source = max(latest, key=lambda item: item[0][2])
        stale = Problem("ecog", "stale", f"latest performance status ({'ECOG' if source == 'ecog' else 'Karnofsky'})"
                        f" is from {day(when)}, older than {current_days} days")
        return PerformanceStatus("stale", value, source, karnofsky, when, (*problems, stale))
    if any(p.kind == "implausible" for p in problems):
        return PerformanceStatus("implausible", problems=problems)
    return PerformanceStatus("missing", problems=(*problems, Problem("ecog", "missing",
                                                                     "no ECOG or Karnofsky score in the record")))
