"""Assessment: everything the rules read, gathered from one PatientRecord in one evaluation context.

``Assessment.to_extension()`` is the ``assessment`` member of the ``hcc-cds.recommendation`` card extension
(service-contract.md §3, contract version 2): values unknown to the record are ``null`` there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime

from . import terminology as t
from .adverse_events import AdverseEvents, assess_adverse_events
from .albi import AlbiResult, assess_albi
from .context import EvaluationContext
from .liver import ChildPugh, assess_child_pugh
from .markers import AfpResult, WeightResult, assess_afp, assess_weight
from .measurements import Problem
from .medications import FirstLine, UnidentifiedMedication, failed_drugs, medication_records, treatment_history
from .patient import PatientFacts, read_patient
from .performance import PerformanceStatus, assess_performance
from .policy import Policy
from .progression import Progression, assess_progression
from .record import PatientRecord, codings, concept_text

_HCC_TEXT = re.compile(r"hepatocellular|\bHCC\b|hepatoma", re.IGNORECASE)


@dataclass(frozen=True)
class Diagnosis:
    status: str  # hcc | possible-hcc | none
    code: str | None = None
    system: str | None = None
    text_only: bool = False  # a Condition names HCC in its text only, without a code


def diagnose(record: PatientRecord) -> Diagnosis:
    """HCC (C22.0 / 109841003) beats possible HCC (C22.8, C22.9, 93870000); C22.1–C22.7 are not HCC."""
    possible = None
    text_only = False
    for cond in record.conditions():
        coded = list(codings(cond.get("code")))
        for system, code in coded:
            if (system == t.ICD10CM and code in t.HCC_ICD10) or (system == t.SNOMED and code in t.HCC_SNOMED):
                return Diagnosis("hcc", code, system)
            if possible is None and ((system == t.ICD10CM and code in t.POSSIBLE_HCC_ICD10)
                                     or (system == t.SNOMED and code in t.POSSIBLE_HCC_SNOMED)):
                possible = Diagnosis("possible-hcc", code, system)
        if not coded and _HCC_TEXT.search(concept_text(cond.get("code"))):
            text_only = True
    return possible or Diagnosis("none", text_only=text_only)


def fitness_tier(ecog: int | None, albi_grade: int | None, child_pugh: str | None, policy: Policy) -> str:
    """frail > weigh > unknown > fit, the first that applies (clinical-rules.md §2 "Fitness tier")."""
    if (ecog is not None and ecog >= policy.frail_ecog_at_least) or child_pugh in policy.frail_child_pugh:
        return "frail"
    if ((ecog is not None and ecog >= policy.weigh_ecog_at_least)
            or (albi_grade is not None and albi_grade >= policy.weigh_albi_grade_at_least)
            or child_pugh in policy.weigh_child_pugh):
        return "weigh"
    if ecog is None or albi_grade is None:
        return "unknown"
    return "fit"


@dataclass(frozen=True)
class Assessment:
    context: EvaluationContext
    diagnosis: Diagnosis
    patient: PatientFacts
    history: tuple[FirstLine, ...]  # every line of systemic therapy, earliest first
    first_line: FirstLine | None  # line 1 when it contains an ICI
    albi: AlbiResult
    child_pugh: ChildPugh
    performance: PerformanceStatus
    fitness: str  # fit | weigh | frail | unknown
    afp: AfpResult
    weight: WeightResult
    progression: Progression | None
    adverse_events: AdverseEvents | None
    unidentified: tuple[UnidentifiedMedication, ...]  # given medication records naming no readable drug
    skipped: tuple[str, ...]  # resources not used, in clinicians' words
    malformed: tuple[str, ...]  # resources read although an element was malformed, in clinicians' words
    unavailable: tuple[str, ...]  # optional data sets that could not be read (named by the service edge)

    @property
    def now(self) -> datetime:
        return self.context.now

    @property
    def policy(self) -> Policy:
        return self.context.policy

    @property
    def current_days(self) -> int:
        return self.context.current_days

    @property
    def failed_drugs(self) -> tuple[str, ...]:
        progressed = self.progression is not None and self.progression.documented
        return failed_drugs(self.first_line, progressed)

    @property
    def problems(self) -> list[Problem]:
        found = [*self.patient.problems, *self.albi.problems, *self.child_pugh.problems, *self.performance.problems,
                 *self.afp.problems, *self.weight.problems]
        if self.progression:
            found += self.progression.problems
        if self.adverse_events:
            found += self.adverse_events.problems
        return found

    def to_extension(self) -> dict:
        line, prog, albi, ecog, cp = self.first_line, self.progression, self.albi, self.performance, self.child_pugh
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
            "childPugh": {
                "status": cp.status, "score": cp.score, "class": cp.grade,
                "minimum": cp.minimum if cp.score is not None else None,
                "points": dict(cp.points) or None,
            },
            "ecog": {"status": ecog.status, "value": ecog.value, "from": ecog.source, "date": _iso(ecog.date)},
            "fitness": self.fitness,
            "afp": {"status": self.afp.status, "ngPerMl": self.afp.ng_per_ml, "date": _iso(self.afp.date)},
            "weightKg": None if self.weight.current_kg is None else round(self.weight.current_kg, 2),
            "ageYears": self.patient.age_years,
            "firstLine": None if line is None else {
                "regimen": line.regimen, "drugs": list(line.drugs), "start": _iso(line.start), "end": _iso(line.end),
                "stopReason": line.stop_reason,
            },
            "treatmentHistory": [{"line": course.line, "regimen": course.regimen, "drugs": list(course.drugs),
                                  "start": _iso(course.start), "end": _iso(course.end)} for course in self.history],
            "failedDrugs": list(self.failed_drugs),
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


_TYPE_WORDS = {"Observation": "result", "Condition": "diagnosis", "MedicationRequest": "medication order",
               "MedicationStatement": "medication record", "MedicationAdministration": "medication administration",
               "AdverseEvent": "adverse-event record", "BodyStructure": "lesion record", "Patient": "patient record",
               "Medication": "medication definition"}


_ELEMENT_WORDS = {"valueQuantity": "value", "valueInteger": "value", "valueCodeableConcept": "value",
                  "valueString": "value", "effectiveDateTime": "date", "effectivePeriod": "date",
                  "effectiveInstant": "date", "issued": "date", "onsetDateTime": "onset date",
                  "recordedDate": "recorded date", "authoredOn": "order date", "subject": "patient reference",
                  "code": "code", "category": "category", "status": "status", "intent": "intent",
                  "medicationCodeableConcept": "medication", "medicationReference": "medication",
                  "dosageInstruction": "dosage", "resource": "structure"}


def _element_words(elements: str) -> str:
    """FHIR element names in a clinician's words ("valueQuantity" -> "value")."""
    words = [_ELEMENT_WORDS.get(e.strip(), e.strip()) for e in elements.split(",")]
    return " and ".join(dict.fromkeys(words)) + (" element" if words in (["category"], ["structure"]) else "")


def assess(record: PatientRecord, context: EvaluationContext | datetime, *,
           unavailable: tuple[str, ...] = ()) -> Assessment:
    """Compute every derived quantity. Pure: same record, time and policy give the same assessment."""
    ctx = context if isinstance(context, EvaluationContext) else EvaluationContext(context)
    policy, today, days = ctx.policy, ctx.today, ctx.current_days
    uses, unidentified = medication_records(record, today)
    history = treatment_history(uses, policy.course_join_days)
    line = history[0] if history and history[0].has_ici else None
    albi = assess_albi(record, ctx.now, days)
    child_pugh = assess_child_pugh(record, albi, ctx.now, days)
    performance = assess_performance(record, ctx.now, days)
    cp_class = child_pugh.grade if child_pugh.status == "computed" else None
    assessment = Assessment(
        context=ctx,
        diagnosis=diagnose(record),
        patient=read_patient(record, today),
        history=history,
        first_line=line,
        albi=albi,
        child_pugh=child_pugh,
        performance=performance,
        fitness=fitness_tier(performance.current_value, albi.current_grade, cp_class, policy),
        afp=assess_afp(record, ctx.now, days),
        weight=assess_weight(record, ctx.now, days),
        progression=assess_progression(record, line, policy) if line else None,
        adverse_events=assess_adverse_events(record, line, today, policy) if line else None,
        unidentified=tuple(unidentified),
        skipped=(),
        malformed=(),
        unavailable=unavailable,
    )
    # Validation happens lazily while assessing: collect what was skipped last.
    skipped = tuple(f"a {_TYPE_WORDS.get(s.resource_type, 'record')} could not be read (its "
                    f"{_element_words(s.problem.replace('invalid R4 at ', ''))} is malformed): not used"
                    for s in record.skipped)
    if record.other_patient:
        count = len(record.other_patient)
        skipped += (f"{count} record{'s' if count != 1 else ''} of another patient ignored",)
    malformed = tuple(f"a {_TYPE_WORDS.get(m.resource_type, 'record')} has a malformed {_element_words(m.problem)}: "
                      "read without it" for m in record.malformed)
    return replace(assessment, skipped=skipped, malformed=malformed)
