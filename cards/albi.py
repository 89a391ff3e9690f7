"""ALBI (albumin-bilirubin) score and grade, mALBI sub-grade (clinical-rules.md §2; clinical-codes.md §1).

ALBI = 0.66 × log10(bilirubin µmol/L) − 0.085 × albumin g/L (Johnson et al., J Clin Oncol 2015).
Grade 1 ≤ −2.60 < grade 2 ≤ −1.39 < grade 3; mALBI 2a ≤ −2.27 < 2b (Hiraoka et al., Liver Cancer 2017).
Graded from the unrounded score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

from . import terminology as t
from .measurements import Problem, latest_usable, quantity_value
from .record import PatientRecord

ALBUMIN_COEFFICIENT = -0.085
BILIRUBIN_COEFFICIENT = 0.66
GRADE_1_MAX = -2.60
GRADE_2_MAX = -1.39
MALBI_2A_MAX = -2.27
# Plausibility in canonical units: albumin 0.5–7.0 g/dL, bilirubin 0.05–50 mg/dL (clinical-rules.md §1).
ALBUMIN_PLAUSIBLE_G_L = (5.0, 70.0)
BILIRUBIN_PLAUSIBLE_UMOL_L = (0.05 * 17.1, 50 * 17.1)


def albi_score(bilirubin_umol_per_l: float, albumin_g_per_l: float) -> float:
    return BILIRUBIN_COEFFICIENT * math.log10(bilirubin_umol_per_l) + ALBUMIN_COEFFICIENT * albumin_g_per_l


def albi_grade(score: float) -> int:
    if score <= GRADE_1_MAX:
        return 1
    return 2 if score <= GRADE_2_MAX else 3


def malbi_grade(score: float) -> str:
    grade = albi_grade(score)
    if grade != 2:
        return str(grade)
    return "2a" if score <= MALBI_2A_MAX else "2b"


@dataclass(frozen=True)
class AlbiPoint:
    date: date
    score: float
    grade: int
    bilirubin_umol_per_l: float | None = None
    albumin_g_per_l: float | None = None


@dataclass(frozen=True)
class AlbiResult:
    status: str  # current | stale | missing | implausible
    score: float | None = None
    grade: int | None = None
    malbi: str | None = None
    bilirubin_umol_per_l: float | None = None
    albumin_g_per_l: float | None = None
    date: date | None = None
    trend: tuple[AlbiPoint, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    @property
    def current_grade(self) -> int | None:
        """The grade only when both inputs are current (rules never act on stale values)."""
        return self.grade if self.status == "current" else None


def assess_albi(record: PatientRecord, now: date | datetime, current_days: int) -> AlbiResult:
    """ALBI from the most recent usable albumin and bilirubin; the date is the older of the two."""
    albumin, albumin_problems = latest_usable(record, "albumin", t.ALBUMIN_MASS, t.ALBUMIN_TO_G_L,
                                              ALBUMIN_PLAUSIBLE_G_L, now, current_days, "g/L", worse=-1)
    bilirubin, bilirubin_problems = latest_usable(record, "bilirubin", t.BILIRUBIN_TOTAL, t.BILIRUBIN_TO_UMOL_L,
                                                  BILIRUBIN_PLAUSIBLE_UMOL_L, now, current_days, "µmol/L")
    problems = tuple(albumin_problems + bilirubin_problems)
    if albumin is None or bilirubin is None:
        unusable = any(p.kind in {"implausible", "unknown-unit"} for p in problems)
        return AlbiResult(status="implausible" if unusable else "missing", problems=problems,
                          albumin_g_per_l=albumin.value if albumin else None,
                          bilirubin_umol_per_l=bilirubin.value if bilirubin else None)
    score = albi_score(bilirubin.value, albumin.value)
    status = "current" if albumin.freshness == bilirubin.freshness == "current" else "stale"
    return AlbiResult(
        status=status, score=score, grade=albi_grade(score), malbi=malbi_grade(score),
        bilirubin_umol_per_l=bilirubin.value, albumin_g_per_l=albumin.value,
        date=min(albumin.date, bilirubin.date), trend=_trend(record), problems=problems,
    )


CARD_TREND_POINTS = 2  # the card shows the last two pairs; the app shows every pair (clinical-rules.md §2)


def albi_history(record: PatientRecord, limit: int | None = None) -> tuple[AlbiPoint, ...]:
    """ALBI on every date with both a usable albumin and bilirubin, newest first (at most ``limit`` points).

    Candidate days come from the (unvalidated) index; only the Observations on the days examined are validated,
    so a card that needs the last two pairs never parses a long history.
    """
    def by_day(codes: frozenset[str]) -> dict[date, list[dict]]:
        days: dict[date, list[dict]] = {}
        for when, obs in record.observation_candidates(codes):
            if when.year > 1:
                days.setdefault(when.date(), []).append(obs)
        return days

    def usable(observations: list[dict], factors: dict[str, float], plausible: tuple[float, float]) -> float | None:
        for obs in observations:
            value = quantity_value(obs, factors)[0] if record.countable(obs) else None
            if value is not None and plausible[0] <= value <= plausible[1]:
                return value
        return None

    albumin, bilirubin = by_day(t.ALBUMIN_MASS), by_day(t.BILIRUBIN_TOTAL)
    points: list[AlbiPoint] = []
    for day in sorted(set(albumin) & set(bilirubin), reverse=True):
        alb = usable(albumin[day], t.ALBUMIN_TO_G_L, ALBUMIN_PLAUSIBLE_G_L)
        bili = usable(bilirubin[day], t.BILIRUBIN_TO_UMOL_L, BILIRUBIN_PLAUSIBLE_UMOL_L)
        if alb is not None and bili is not None:
            score = albi_score(bili, alb)
            points.append(AlbiPoint(day, score, albi_grade(score), bili, alb))
            if limit is not None and len(points) == limit:
                break
    return tuple(points)


def _trend(record: PatientRecord) -> tuple[AlbiPoint, ...]:
    """The last two pairs, newest first (empty with fewer than two)."""
    points = albi_history(record, CARD_TREND_POINTS)
    return points if len(points) > 1 else ()
