"""Assessment: everything the rules read, gathered from one PatientRecord at one evaluation time.

``Assessment.to_extension()`` is the ``assessment`` member of the ``hcc-cds.recommendation`` card extension
(service-contract.md §3): values unknown to the record are ``null`` there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from . import terminology as t
from .adverse_events import AdverseEvents, assess_adverse_events
from .albi import AlbiResult, assess_albi
from .markers import AfpResult, WeightResult, assess_afp, assess_weight
from .measurements import Problem
from .medications import FirstLine, first_line, medication_uses
from .performance import PerformanceStatus, assess_performance
from .progression import Progression, assess_progression
from .record import PatientRecord, codings

DEFAULT_CURRENT_DAYS = 30


@dataclass(frozen=True)
class Diagnosis:
    status: str  # hcc | possible-hcc | none
    code: str | None = None
    system: str | None = None


def diagnose(record: PatientRecord) -> Diagnosis:
    """HCC (C22.0 / 109841003) beats possible HCC (C22.8, C22.9, 93870000); C22.1–C22.7 are not HCC."""
    possible = None
    for cond in record.conditions():
        for system, code in codings(cond.get("code")):
            if (system == t.ICD10CM and code in t.HCC_ICD10) or (system == t.SNOMED and code in t.HCC_SNOMED):
                return Diagnosis("hcc", code, system)
            if possible is None and ((system == t.ICD10CM and code in t.POSSIBLE_HCC_ICD10)
                                     or (system == t.SNOMED and code in t.POSSIBLE_HCC_SNOMED)):
                possible = Diagnosis("possible-hcc", code, system)
    return possible or Diagnosis("none")


@dataclass(frozen=True)
class Assessment:
    now: datetime
    current_days: int
    diagnosis: Diagnosis
    first_line: FirstLine | None
    albi: AlbiResult
    performance: PerformanceStatus
    afp: AfpResult
    weight: WeightResult
    progression: Progression | None
    adverse_events: AdverseEvents | None
    skipped: tuple[str, ...]  # resources skipped as invalid R4, "Type/id: problem"
    unavailable: tuple[str, ...]  # optional data sets that could not be read (named by the service edge)

    @property
    def problems(self) -> list[Problem]:
        found = [*self.albi.problems, *self.performance.problems, *self.afp.problems, *self.weight.problems]
        if self.progression:
            found += self.progression.problems
        if self.adverse_events:
            found += self.adverse_events.problems
        return found

    def to_extension(self) -> dict:
        line, prog, albi, ecog = self.first_line, self.progression, self.albi, self.performance
        aes = self.adverse_events
        return {
            "albi": {
                "status": albi.status,
                "score": None if albi.score is None else round(albi.score, 2),
                "grade": albi.grade,
                "mAlbiGrade": albi.malbi,
                "bilirubinUmolPerL": None if albi.bilirubin_umol_per_l is None else round(albi.bilirubin_umol_per_l, 2),
                "albuminGPerL": None if albi.albumin_g_per_l is None else round(albi.albumin_g_per_l, 1),
                "date": _iso(albi.date),
            },
            "ecog": {"status": ecog.status, "value": ecog.value, "from": ecog.source, "date": _iso(ecog.date)},
            "afp": {"status": self.afp.status, "ngPerMl": self.afp.ng_per_ml, "date": _iso(self.afp.date)},
            "weightKg": None if self.weight.current_kg is None else round(self.weight.current_kg, 2),
            "firstLine": None if line is None else {
                "regimen": line.regimen, "start": _iso(line.start), "end": _iso(line.end),
                "stopReason": line.stop_reason,
            },
            "progression": None if prog is None else {
                "documented": prog.documented, "date": _iso(prog.date), "pattern": prog.pattern,
                "newVascularInvasion": prog.new_vascular_invasion, "progressingLesions": prog.progressing_lesions,
                "organs": list(prog.organs), "hyperprogression": prog.hyperprogression,
            },
            "adverseEvents": {
                "immuneRelated": [{"code": f.code, "severe": f.severe} for f in (aes.immune_related if aes else ())],
                "bevacizumabRelated": [{"code": f.code, "severe": f.severe}
                                       for f in (aes.bevacizumab_related if aes else ())],
            },
        }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def assess(record: PatientRecord, now: datetime, *, current_days: int = DEFAULT_CURRENT_DAYS,
           unavailable: tuple[str, ...] = ()) -> Assessment:
    """Compute every derived quantity. Pure: same record and time give the same assessment."""
    today = now.date()
    line = first_line(medication_uses(record, today))
    assessment = Assessment(
        now=now,
        current_days=current_days,
        diagnosis=diagnose(record),
        first_line=line,
        albi=assess_albi(record, today, current_days),
        performance=assess_performance(record, today, current_days),
        afp=assess_afp(record, today, current_days),
        weight=assess_weight(record, today, current_days),
        progression=assess_progression(record, line) if line else None,
        adverse_events=assess_adverse_events(record, line, today) if line else None,
        skipped=(),
        unavailable=unavailable,
    )
    # Validation happens lazily while assessing: collect what was skipped last.
    skipped = tuple(f"{s.resource_type}/{s.resource_id}: {s.problem}" for s in record.skipped)
    if record.other_patient:
        shown = ", ".join(record.other_patient[:5]) + (" …" if len(record.other_patient) > 5 else "")
        skipped += (f"{len(record.other_patient)} resource(s) of another patient ignored ({shown})",)
    return replace(assessment, skipped=skipped)

