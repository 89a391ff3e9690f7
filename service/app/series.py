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

from cards import albi, markers, progression, rules
from cards import terminology as t
from cards.evidence import CITATION, QUOTES
from cards.measurements import quantity_value
from cards.patient_view import evaluate
from cards.performance import _score_value, karnofsky_to_ecog
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


def run_core(resources: list[dict], now: datetime, patient_id: str, *, current_days: int,
             unavailable: tuple[str, ...] = ()) -> CoreResult:
    """Evaluate exactly as the patient-view hook does, and read the chart series from the same record."""
    result = evaluate(resources, now, patient_id, current_days=current_days, unavailable=unavailable)
    by_topic = {_topic(card): card for card in result.cards}
    record = PatientRecord(resources, patient_id)
    lesions = result.assessment.progression.lesions if result.assessment.progression else ()
    series = Series(albi_pairs(record), ecog_series(record), afp_series(record), lesion_sums(lesions))
    evidence = {option.code: tuple(option.evidence) for option in result.recommendation.options}
    return CoreResult(result.cards, by_topic.get(SECOND_LINE_TOPIC), by_topic.get(QUALITY_TOPIC), series,
                      policy_values(current_days), evidence)


def _usable(record: PatientRecord, observations: list[dict], factors: dict[str, float],
            plausible: tuple[float, float]) -> float | None:
    for obs in observations:
        value = quantity_value(obs, factors)[0] if record.countable(obs) else None
        if value is not None and plausible[0] <= value <= plausible[1]:
            return value
    return None


def albi_pairs(record: PatientRecord) -> list[dict]:
    """ALBI on every date with a usable albumin and bilirubin (the card shows only the latest pairs)."""
    def by_day(codes: frozenset[str]) -> dict[date, list[dict]]:
        days: dict[date, list[dict]] = defaultdict(list)
        for when, obs in record.observation_candidates(codes):
            if when != date.min:
                days[when].append(obs)
        return days

    albumin, bilirubin = by_day(t.ALBUMIN_MASS), by_day(t.BILIRUBIN_TOTAL)
    points = []
    for day in sorted(set(albumin) & set(bilirubin)):
        alb = _usable(record, albumin[day], t.ALBUMIN_TO_G_L, albi.ALBUMIN_PLAUSIBLE_G_L)
        bili = _usable(record, bilirubin[day], t.BILIRUBIN_TO_UMOL_L, albi.BILIRUBIN_PLAUSIBLE_UMOL_L)
        if alb is not None and bili is not None:
            score = albi.albi_score(bili, alb)
            points.append({"date": day.isoformat(), "score": round(score, 2), "grade": albi.albi_grade(score),
                           "mAlbiGrade": albi.malbi_grade(score), "bilirubin": round(bili, 1),
                           "albumin": round(alb, 1)})
    return points


def ecog_series(record: PatientRecord) -> list[dict]:
    """Every plausible ECOG, and Karnofsky mapped to ECOG (marked), oldest first."""
    points = []
    sources = (("ecog", t.ECOG, {**t.ECOG_LOINC_ANSWERS, **t.ECOG_SNOMED_ANSWERS}),
               ("karnofsky", t.KARNOFSKY, t.KARNOFSKY_LOINC_ANSWERS))
    for source, code, answers in sources:
        for obs in record.observations({code}):
            when, value = observation_date(obs), _score_value(obs, answers)
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


def policy_values(current_days: int) -> list[tuple[str, str]]:
    """The [derived] thresholds in force, as the rules read them (rules v2: the site policy object)."""
    return [
        ("'Current' means dated within", f"{current_days} days"),
        ("Poor performance status", f"ECOG ≥ {rules.ECOG_POOR} [derived]"),
        ("Poor liver function", f"ALBI grade ≥ {rules.ALBI_POOR_GRADE} [derived]"),
        ("ALBI grade bands", f"grade 1 ≤ {albi.GRADE_1_MAX:.2f} < grade 2 ≤ {albi.GRADE_2_MAX:.2f} < grade 3; "
                             f"mALBI 2a ≤ {albi.MALBI_2A_MAX:.2f}"),
        ("Oligoprogression", f"≤ {progression.OLIGO_MAX_LESIONS} progressing lesions in ≤ "
                             f"{progression.OLIGO_MAX_ORGANS} organs, ≥ {progression.OLIGO_MIN_CONTROL.days} days "
                             "after first-line start [derived]"),
        ("Hyperprogression", f"< {progression.HYPERPROGRESSION_WINDOW.days} days and > "
                             f"{progression.HYPERPROGRESSION_GROWTH * 100:.0f} % tumour burden [derived]"),
        ("Lesion growth", f"≥ {progression.GROWTH_FRACTION * 100:.0f} % and ≥ {progression.GROWTH_MIN_MM:g} mm "
                          "over nadir"),
        ("Ramucirumab", f"AFP ≥ {markers.AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:g} ng/mL"),
        ("Lenvatinib dose", f"{rules.LENVATINIB_LOW_MG} mg < {rules.LENVATINIB_WEIGHT_KG:g} kg ≤ "
                            f"{rules.LENVATINIB_HIGH_MG} mg once daily"),
    ]


def quote(key: str) -> str | None:
    """The paper's verbatim sentence for an evidence key (cards.evidence.QUOTES)."""
    return QUOTES.get(key)
