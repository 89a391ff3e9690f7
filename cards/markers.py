"""AFP and body weight (clinical-rules.md §1; clinical-codes.md §2.5–2.6).

AFP in mass units (1834-1, 53962-7, 83073-7; ng/mL) feeds the ramucirumab rule (AFP ≥ 400 ng/mL, REACH-2);
an IU/mL result (19176-7, 53961-9, 83072-9) is reported "not evaluated", never converted.
Weight (29463-7; kg, g, [lb_av]) sets the lenvatinib dose (8 mg < 60 kg, 12 mg ≥ 60 kg).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from . import terminology as t
from .measurements import Problem, day, latest_usable
from .record import PatientRecord, observation_date

AFP_RAMUCIRUMAB_THRESHOLD_NG_ML = 400.0
WEIGHT_PLAUSIBLE_KG = (20.0, 300.0)
AFP_PLAUSIBLE_NG_ML = (0.0, 10_000_000.0)


@dataclass(frozen=True)
class AfpResult:
    status: str  # current | stale | missing | not-evaluated
    ng_per_ml: float | None = None
    date: date | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def current_value(self) -> float | None:
        return self.ng_per_ml if self.status == "current" else None


def assess_afp(record: PatientRecord, now: date | datetime, current_days: int) -> AfpResult:
    mass, problems = latest_usable(record, "AFP", t.AFP_MASS, t.AFP_TO_NG_ML, AFP_PLAUSIBLE_NG_ML, now,
                                   current_days, "ng/mL")
    newest = next(record.observations(t.AFP_UNITS), None)
    newest_iu = observation_date(newest) if newest else None
    if newest_iu and (mass is None or newest_iu > mass.date):
        note = Problem("afp", "not-evaluated", f"latest AFP ({day(newest_iu)}) is in IU/mL: not evaluated for "
                       "the AFP ≥ 400 ng/mL criterion (no conversion is assumed)")
        kept = tuple(p for p in problems if p.kind != "missing")
        return AfpResult("not-evaluated", None, newest_iu, (*kept, note))
    if mass is None:
        return AfpResult("missing", problems=tuple(problems))
    return AfpResult(mass.freshness, mass.value, mass.date, tuple(problems))


@dataclass(frozen=True)
class WeightResult:
    status: str  # current | stale | missing | implausible
    kg: float | None = None
    date: date | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def current_kg(self) -> float | None:
        return self.kg if self.status == "current" else None


def assess_weight(record: PatientRecord, now: date | datetime, current_days: int) -> WeightResult:
    measurement, problems = latest_usable(record, "weight", {t.BODY_WEIGHT}, t.WEIGHT_TO_KG,
                                          WEIGHT_PLAUSIBLE_KG, now, current_days, "kg")
    if measurement is None:
        unusable = any(p.kind in {"implausible", "unknown-unit"} for p in problems)
        return WeightResult("implausible" if unusable else "missing", problems=tuple(problems))
    return WeightResult(measurement.freshness, measurement.value, measurement.date, tuple(problems))

