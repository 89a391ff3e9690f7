"""The pathway app's one adapter to the clinical core: every touch of ``cards`` internals is in this module.

The page's view-model is built from the second-line card's ``hcc-cds.recommendation`` extension
(:mod:`service.app.pathway`) and from what this module reads: the cards of ``cards.patient_view.evaluate``
(the same entry the patient-view hook uses), chart series from the PatientRecord (every ALBI pair with the
``cards.albi`` formula and plausibility limits, ECOG/Karnofsky, AFP in ng/mL, the sum of lesion diameters per
scan) and the policy values in force. When the core changes (rules v2), only this module adapts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from cards import albi, markers, progression
from cards import terminology as t
from cards.evidence import CITATION, QUOTES
from cards.measurements import quantity_value
from cards.patient_view import evaluate
from cards.performance import karnofsky_to_ecog, score_value
from cards.policy import Policy
from cards.record import PatientRecord, observation_date

EXTENSION = "hcc-cds.recommendation"
SECOND_LINE_TOPIC = "second-line-options"
QUALITY_TOPIC = "data-quality"


@dataclass(frozen=True)
class Series:
    """Chart data, oldest first; dates as ISO strings."""

    albi: list[dict] = field(default_factory=list)  # {date, score, grade, bilirubin, albumin}
    ecog: list[dict] = field(default_factory=list)  # {date, value, source, karnofsky}
    afp: list[dict] = field(default_factory=list)  # {date, value}
    lesion_sum: list[dict] = field(default_factory=list)  # {date, mm, lesions}


@dataclass(frozen=True)
class CoreResult:
    cards: list[dict]
    second_line: dict | None  # the second-line card
    quality: dict | None  # the data-quality card
    series: Series
    policy: list[tuple[str, str]]  # (what, value in force)
    evidence: dict[str, tuple[str, ...]]  # option code -> quote keys (v1 extensions do not carry them)
    citation: str = CITATION


def _topic(card: dict) -> str | None:
    return ((card.get("source") or {}).get("topic") or {}).get("code")


def run_core(resources: list[dict], now: datetime, patient_id: str, *, policy: Policy,
             unavailable: tuple[str, ...] = ()) -> CoreResult:
    """Evaluate exactly as the patient-view hook does, and read the chart series from the same record."""
    result = evaluate(resources, now, patient_id, policy=policy, unavailable=unavailable)
    by_topic = {_topic(card): card for card in result.cards}
    record = PatientRecord(resources, patient_id)
    lesions = result.assessment.progression.lesions if result.assessment.progression else ()
    series = Series(albi_pairs(record), ecog_series(record), afp_series(record), lesion_sums(lesions))
    evidence = {option.code: tuple(option.evidence) for option in result.decision.options}
    return CoreResult(result.cards, by_topic.get(SECOND_LINE_TOPIC), by_topic.get(QUALITY_TOPIC), series,
                      policy_values(policy), evidence)


def albi_pairs(record: PatientRecord) -> list[dict]:
    """ALBI on every date with a usable albumin and bilirubin (cards.albi.albi_history), oldest first."""
    return [{"date": p.date.isoformat(), "score": round(p.score, 2), "grade": p.grade,
             "mAlbiGrade": albi.malbi_grade(p.score), "bilirubin": round(p.bilirubin_umol_per_l or 0, 1),
             "albumin": round(p.albumin_g_per_l or 0, 1)} for p in reversed(albi.albi_history(record))]


def ecog_series(record: PatientRecord) -> list[dict]:
    """Every plausible ECOG, and Karnofsky mapped to ECOG (marked), oldest first."""
    points = []
    sources = (("ecog", t.ECOG, {**t.ECOG_LOINC_ANSWERS, **t.ECOG_SNOMED_ANSWERS}),
               ("karnofsky", t.KARNOFSKY, t.KARNOFSKY_LOINC_ANSWERS))
    for source, code, answers in sources:
        for obs in record.observations({code}):
            when, value = observation_date(obs), score_value(obs, answers)
            if when is None or value is None or not float(value).is_integer():
                continue
            value = int(value)
            if source == "ecog" and 0 <= value <= 5:
                points.append({"date": when.isoformat(), "value": value, "source": "ECOG"})
            elif source == "karnofsky" and 0 <= value <= 100 and value % 10 == 0:
                points.append({"date": when.isoformat(), "value": karnofsky_to_ecog(value),
                               "source": f"Karnofsky {value}"})
    return sorted(points, key=lambda p: p["date"])


def afp_series(record: PatientRecord) -> list[dict]:
    """AFP in ng/mL (IU/mL results are not converted, so not shown), oldest first."""
    points = []
    for obs in record.observations(t.AFP_MASS):
        when = observation_date(obs)
        value = quantity_value(obs, t.AFP_TO_NG_ML)[0]
        if when and value is not None and markers.AFP_PLAUSIBLE_NG_ML[0] <= value <= markers.AFP_PLAUSIBLE_NG_ML[1]:
            points.append({"date": when.isoformat(), "value": round(value, 1)})
    return sorted(points, key=lambda p: p["date"])


def lesion_sums(lesions: tuple[progression.Lesion, ...] | list) -> list[dict]:
    """Sum of the longest diameters of the lesions measured on each scan date."""
    by_day: dict[date, list[float]] = defaultdict(list)
    for lesion in lesions:
        for when, size in lesion.measurements:
            by_day[when].append(size)
    return [{"date": day.isoformat(), "mm": round(sum(sizes), 1), "lesions": len(sizes)}
            for day, sizes in sorted(by_day.items())]


def policy_values(policy: Policy) -> list[tuple[str, str]]:
    """The site policy's [derived] values in force, then the fixed thresholds the rules read."""
    return [
        *((f"{what[:1].upper()}{what[1:]} [derived]", value) for what, value in policy.values_in_force()),
        ("ALBI grade bands", f"grade 1 ≤ {albi.GRADE_1_MAX:.2f} < grade 2 ≤ {albi.GRADE_2_MAX:.2f} < grade 3; "
                             f"mALBI 2a ≤ {albi.MALBI_2A_MAX:.2f}"),
        ("Lesion growth", f"≥ {progression.GROWTH_FRACTION * 100:.0f} % and ≥ {progression.GROWTH_MIN_MM:g} mm "
                          "over nadir"),
        ("Ramucirumab", f"AFP ≥ {markers.AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:g} ng/mL"),
        ("Lenvatinib dose", f"{policy.lenvatinib_low_mg} mg < {policy.lenvatinib_weight_kg:g} kg ≤ "
                            f"{policy.lenvatinib_high_mg} mg once daily; {policy.lenvatinib_child_pugh_c_mg} mg at "
                            "Child-Pugh C"),
        ("Site policy", f"{policy.name} version {policy.version} (sha256 {policy.sha256[:12]}…)"),
    ]


def quote(key: str) -> str | None:
    """The paper's verbatim sentence for an evidence key (cards.evidence.QUOTES)."""
    return QUOTES.get(key)
