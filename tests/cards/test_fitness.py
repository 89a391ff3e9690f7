"""cards.assessment.fitness_tier and the inputs it reads (clinical-rules.md §2 "ALBI", "ECOG", "Fitness tier";
§1 "Time"), with the cases of /work/notes/boundary-cases.json (hand-computed from the rules).

Tier, the first that applies: frail (ECOG ≥ 3 or Child-Pugh C) > weigh (ECOG 2, ALBI grade 3 or Child-Pugh B)
> unknown (ECOG or ALBI not current) > fit. A Child-Pugh that cannot be computed does not block ``fit``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cards.assessment import assess, fitness_tier
from cards.context import EvaluationContext
from cards.policy import default_policy
from tests.cards import builders as b

RECENT = b.ago(4)
EVALUATION = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("ecog", "albi", "child_pugh", "tier"), [
    (3, 1, "A", "frail"),              # ECOG ≥ 3
    (1, 1, "C", "frail"),              # Child-Pugh C
    (2, 3, "C", "frail"),              # frail outranks weigh
    (None, 2, "C", "frail"),           # frail outranks unknown
    (2, 1, "A", "weigh"),              # ECOG 2
    (1, 3, None, "weigh"),             # ALBI grade 3
    (0, 1, "B", "weigh"),              # Child-Pugh B with ALBI 1
    (None, 3, None, "weigh"),          # weigh outranks unknown (ECOG missing)
    (None, 1, "A", "unknown"),         # ECOG not current
    (1, None, None, "unknown"),        # ALBI missing
    (1, 2, None, "fit"),               # Child-Pugh not computable does not block fit
    (1, 2, "A", "fit"),
    (0, 1, "A", "fit"),
    (5, None, None, "frail"),
])
def test_fitness_tier_combinations(ecog, albi, child_pugh, tier):
    assert fitness_tier(ecog, albi, child_pugh, default_policy()) == tier


def assessed(*resources, now=b.NOW):
    return assess(b.record(*resources), EvaluationContext(now))


def grade_1_labs(when: str = RECENT) -> list[dict]:
    return [b.bilirubin(0.6, "mg/dL", when), b.albumin(4.2, "g/dL", when)]  # ALBI −2.90, grade 1


# -- tiers from records -------------------------------------------------------------------------------
@pytest.mark.parametrize(("kps", "ecog", "tier"), [(70, 1, "fit"), (60, 2, "weigh"), (40, 3, "frail")])
def test_karnofsky_maps_to_ecog_for_the_tier(kps, ecog, tier):
    a = assessed(*grade_1_labs(), b.karnofsky(kps, RECENT))
    assert a.performance.value == ecog and a.performance.source == "karnofsky"
    assert a.fitness == tier


def test_ecog_35_days_old_is_not_current_so_the_tier_is_unknown():
    a = assessed(*grade_1_labs(), b.ecog(1, b.ago(35)))
    assert a.performance.status == "stale"
    assert a.fitness == "unknown"


def test_albi_missing_gives_unknown():
    assert assessed(b.ecog(1, RECENT)).fitness == "unknown"


def test_preliminary_albumin_is_not_used_so_the_tier_is_unknown():
    a = assessed(b.bilirubin(0.6, "mg/dL", RECENT), b.albumin(4.2, "g/dL", RECENT, status="preliminary"),
                 b.ecog(1, RECENT))
    assert a.albi.grade is None and a.fitness == "unknown"


def test_albi_40_days_old_gives_unknown():
    a = assessed(*grade_1_labs(b.ago(40)), b.ecog(0, RECENT))
    assert a.albi.status == "stale"
    assert a.fitness == "unknown"


def test_albi_grade_3_with_ecog_missing_is_weigh_not_unknown():
    a = assessed(b.bilirubin(3.0, "mg/dL", RECENT), b.albumin(2.8, "g/dL", RECENT))
    assert a.fitness == "weigh"


def test_child_pugh_b_with_albi_grade_1_is_weigh():
    # 0.6 mg/dL (1) + 4.2 g/dL (1) + INR 1.2 (1) + ascites active (2) + encephalopathy active (2) = 7 → B
    a = assessed(*grade_1_labs(), b.ecog(0, RECENT), b.observation("6301-6", 1.2, "{INR}", RECENT),
                 b.condition("R18.8", "2026-05-01"), b.condition("K76.82", "2026-05-01"))
    assert (a.albi.grade, a.child_pugh.grade) == (1, "B")
    assert a.fitness == "weigh"


def test_fit_needs_current_ecog_and_albi_only():
    a = assessed(*grade_1_labs(), b.ecog(1, RECENT))
    assert a.child_pugh.status == "not-computable"
    assert a.fitness == "fit"


# -- the current window (30 days) ----------------------------------------------------------------------
def test_lab_29_days_before_evaluation_is_current():
    a = assessed(*grade_1_labs("2026-10-22T09:00:00Z"), now=EVALUATION)
    assert a.albi.status == "current"


def test_lab_31_days_before_evaluation_is_stale():
    a = assessed(*grade_1_labs("2026-10-20T09:00:00Z"), now=EVALUATION)
    assert a.albi.status == "stale"


# -- ECOG at the same day and the same instant --------------------------------------------------------
def test_same_day_ecog_later_time_wins_without_conflict():
    a = assessed(b.ecog(2, "2026-05-12T08:00:00Z"), b.ecog(1, "2026-05-12T15:00:00Z"))
    assert a.performance.value == 1
    assert not [p for p in a.performance.problems if p.kind == "conflict"]


def test_same_instant_ecog_disagreement_uses_the_worse_and_names_the_conflict():
    a = assessed(b.ecog(1, "2026-05-12T10:00:00Z"), b.ecog(2, "2026-05-12T10:00:00Z"))
    assert a.performance.value == 2
    assert [p for p in a.performance.problems if p.kind == "conflict"]


def test_ecog_dated_after_the_evaluation_time_is_not_used_and_is_named():
    a = assessed(b.ecog(0, b.ago(-1)), b.ecog(2, RECENT))
    assert a.performance.value == 2
    assert any("after the evaluation time" in p.detail for p in a.performance.problems)


# -- ALBI worked examples (clinical-rules.md §2) --------------------------------------------------------
@pytest.mark.parametrize(("bili", "alb", "score", "grade", "malbi"), [
    ((0.6, "mg/dL"), (4.2, "g/dL"), -2.90, 1, "1"),
    ((0.8, "mg/dL"), (3.9, "g/dL"), -2.57, 2, "2a"),
    ((1.2, "mg/dL"), (3.5, "g/dL"), -2.11, 2, "2b"),
    ((3.0, "mg/dL"), (2.8, "g/dL"), -1.25, 3, "3"),
    ((20.52, "umol/L"), (35, "g/L"), -2.11, 2, "2b"),
    ((12, "umol/l"), (41, "g/l"), -2.77, 1, "1"),
    ((2.4, "mg/dL"), (3.0, "g/dL"), -1.49, 2, "2b"),
    ((3.5, "mg/dL"), (2.5, "g/dL"), -0.95, 3, "3"),
], ids=["A", "B", "C", "D", "C-SI", "lower-case-units", "child-pugh-b", "child-pugh-c"])
def test_albi_worked_examples(bili, alb, score, grade, malbi):
    a = assessed(b.bilirubin(*bili, RECENT), b.albumin(*alb, RECENT), b.ecog(1, RECENT))
    assert round(a.albi.score, 2) == score
    assert (a.albi.grade, a.albi.malbi) == (grade, malbi)
    assert a.fitness == ("weigh" if grade == 3 else "fit")
