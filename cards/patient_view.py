"""The patient-view pipeline: record -> assessment -> decision -> cards (architecture.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .assessment import Assessment, assess
from .context import EvaluationContext
from .policy import Policy, default_policy
from .record import PatientRecord
from .render import UuidFactory, data_quality_card, new_uuid, second_line_card, trials_card
from .rules import Decision, decide


@dataclass(frozen=True)
class PatientViewResult:
    cards: list[dict]
    assessment: Assessment
    decision: Decision


def evaluate(resources: Iterable[dict], now: datetime, patient_id: str, *, policy: Policy | None = None,
             unavailable: tuple[str, ...] = (), new_id: UuidFactory = new_uuid,
             app_launch_url: str | None = None) -> PatientViewResult:
    """Cards for one patient at ``now``: second-line, data-quality and trials cards, or none (R0)."""
    record = PatientRecord(resources, patient_id)
    assessment = assess(record, EvaluationContext(now, policy or default_policy()), unavailable=unavailable)
    decision = decide(assessment)
    cards: list[dict] = []
    if decision.applicable:
        cards.append(second_line_card(assessment, decision, new_id, app_launch_url))
    if decision.applicable or decision.applicability_unclear:
        quality = data_quality_card(assessment, decision, patient_id, new_id)
        if quality:
            cards.append(quality)
    if decision.applicable:
        trials = trials_card(assessment, new_id, at_progression=decision.applicability == "toxicity-stop")
        if trials:
            cards.append(trials)
    return PatientViewResult(cards, assessment, decision)
