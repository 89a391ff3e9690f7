"""Child-Pugh score and class (clinical-rules.md §2 "Child-Pugh"; clinical-codes.md §7.7).

Points: bilirubin < 2 / 2–3 / > 3 mg/dL; albumin > 3.5 / 2.8–3.5 / < 2.8 g/dL; INR < 1.7 / 1.7–2.3 / > 2.3;
ascites and encephalopathy: none recorded 1, an active coded Condition 2, severe (SNOMED 24484000) 3.
Class A 5–6, B 7–9, C 10–15. Computed only from current bilirubin, albumin and INR. FHIR rarely records the
*absence* of ascites or encephalopathy, so the score is a minimum ("at least A6") unless both are recorded active.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from . import terminology as t
from .albi import AlbiResult
from .measurements import Measurement, Problem, latest_usable
from .record import PatientRecord, codings

INR_PLAUSIBLE = (0.5, 10.0)


def bilirubin_points(mg_per_dl: float) -> int:
    value = round(mg_per_dl, 6)
    return 1 if value < 2 else 2 if value <= 3 else 3


def albumin_points(g_per_dl: float) -> int:
    value = round(g_per_dl, 6)
    return 1 if value > 3.5 else 2 if value >= 2.8 else 3


def inr_points(inr: float) -> int:
    value = round(inr, 6)
    return 1 if value < 1.7 else 2 if value <= 2.3 else 3


def child_pugh_class(score: int) -> str:
    return "A" if score <= 6 else "B" if score <= 9 else "C"


@dataclass(frozen=True)
class ChildPugh:
    status: str  # computed | not-computable
    score: int | None = None
    grade: str | None = None  # the class: A | B | C
    minimum: bool = False
    points: tuple[tuple[str, int], ...] = ()
    missing: tuple[str, ...] = ()  # current inputs lacking (bilirubin, albumin, inr)
    unrecorded: tuple[str, ...] = ()  # ascites / encephalopathy not recorded as active (why the score is a minimum)
    inr: Measurement | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def label(self) -> str:
        """"B8", or "at least A6" when ascites or encephalopathy is not recorded."""
        if self.score is None:
            return "not computable"
        return f"{'at least ' if self.minimum else ''}{self.grade}{self.score}"


def _condition_points(record: PatientRecord, codes: frozenset[str]) -> int | None:
    """2 for an active coded Condition, 3 when its severity is severe; None when none is recorded active."""
    found = None
    for cond in record.conditions():
        if not any(s == t.ICD10CM and c in codes for s, c in codings(cond.get("code"))):
            continue
        status = {c for _s, c in codings(cond.get("clinicalStatus"))}
        if not status & t.ACTIVE_CLINICAL_STATUS:
            continue
        severe = any(c == t.SEVERE_SNOMED for _s, c in codings(cond.get("severity")))
        found = max(found or 0, 3 if severe else 2)
    return found


def assess_inr(record: PatientRecord, now: date | datetime, current_days: int) -> tuple[Measurement | None,
                                                                                       list[Problem]]:
    return latest_usable(record, "INR", t.INR, t.INR_UNITS, INR_PLAUSIBLE, now, current_days, "", worse=1)


def assess_child_pugh(record: PatientRecord, albi: AlbiResult, now: date | datetime,
                      current_days: int) -> ChildPugh:
    """Child-Pugh from the current ALBI inputs, the current INR and active ascites/encephalopathy Conditions."""
    inr, problems = assess_inr(record, now, current_days)
    missing = []
    current_albi = albi.status == "current"
    if not current_albi or albi.bilirubin_umol_per_l is None:
        missing.append("bilirubin")
    if not current_albi or albi.albumin_g_per_l is None:
        missing.append("albumin")
    if inr is None or inr.freshness != "current":
        missing.append("inr")
    if missing:
        return ChildPugh("not-computable", missing=tuple(missing), inr=inr, problems=tuple(problems))
    assert albi.bilirubin_umol_per_l is not None and albi.albumin_g_per_l is not None and inr is not None
    ascites = _condition_points(record, t.ASCITES_ICD10)
    encephalopathy = _condition_points(record, t.ENCEPHALOPATHY_ICD10)
    points = (("bilirubin", bilirubin_points(albi.bilirubin_umol_per_l / 17.1)),
              ("albumin", albumin_points(albi.albumin_g_per_l / 10)),
              ("inr", inr_points(inr.value)),
              ("ascites", ascites or 1),
              ("encephalopathy", encephalopathy or 1))
    score = sum(p for _name, p in points)
    unrecorded = tuple(name for name, found in (("ascites", ascites), ("encephalopathy", encephalopathy))
                       if found is None)
    return ChildPugh("computed", score, child_pugh_class(score), minimum=bool(unrecorded), points=points,
                     unrecorded=unrecorded, inr=inr, problems=tuple(problems))
