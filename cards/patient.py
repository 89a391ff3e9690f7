"""The Patient resource: age at evaluation and deceased status (clinical-rules.md §0, §1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .measurements import Problem
from .record import PatientRecord, parse_date


@dataclass(frozen=True)
class PatientFacts:
    age_years: int | None
    deceased: bool
    problems: tuple[Problem, ...] = ()


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def read_patient(record: PatientRecord, today: date) -> PatientFacts:
    """Age from ``birthDate``; deceased when ``deceasedBoolean`` is true or ``deceasedDateTime`` is set."""
    patients = record.all("Patient")
    if not patients:
        return PatientFacts(None, False, (Problem("patient", "missing", "the Patient record was not available: "
                                                  "age and deceased status unknown"),))
    patient = patients[0]
    deceased = patient.get("deceasedBoolean") is True or isinstance(patient.get("deceasedDateTime"), str)
    birth = parse_date(patient.get("birthDate"))
    if birth is None or birth > today:
        return PatientFacts(None, deceased, (Problem("patient", "missing", "date of birth not recorded: "
                                                     "age unknown"),))
    return PatientFacts(age_on(birth, today), deceased)
