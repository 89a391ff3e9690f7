"""The patient-view pipeline: record -> assessment -> recommendation -> cards (architecture.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .assessment import DEFAULT_CURRENT_DAYS, Assessment, assess
from .record import PatientRecord
from .render import UuidFactory, data_quality_card, new_uuid, second_line_card, trials_card
from .rules import Recommendation, recommend


@dataclass(frozen=True)
class PatientViewResult:
    cards: list[dict]
    assessment: Assessment
    recommendation: Recommendation


def evaluate(resources: Iterable[dict], now: datetime, patient_id: str, *,
             current_days: int = DEFAULT_CURRENT_DAYS, unavailable: tuple[str, ...] = (),
             new_id: UuidFactory = new_uuid) -> PatientViewResult:
    """Cards for one patient at ``now``: second-line, data-quality and trials cards, or none (R0)."""
    record = PatientRecord(resources, patient_id)
    assessment = assess(record, now, current_days=current_days, unavailable=unavailable)
    rec = recommend(assessment)
    cards: list[dict] = []
    if rec.applicable:
        cards.append(second_line_card(assessment, rec, new_id))
    if rec.applicable or rec.applicability_unclear:
        quality = data_quality_card(assessment, rec, patient_id, new_id)
        if quality:
            cards.append(quality)
    if rec.applicable:
        cards.append(trials_card(new_id))
    return PatientViewResult(cards, assessment, rec)
