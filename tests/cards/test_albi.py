"""cards.albi: ALBI score, grade and mALBI (clinical-rules.md §2; clinical-codes.md §1).

Expected scores are the worked examples of clinical-codes.md §1 (computed there by hand / with math.log10):
A −2.9026 (grade 1), B −2.5652 (2a), C −2.1090 (2b), D −1.2513 (3).
"""

from __future__ import annotations

import math

import pytest

from cards.albi import albi_grade, albi_score, assess_albi, malbi_grade
from tests.cards import builders as b

TOL = 1e-3
CURRENT_DAYS = 30

WORKED = [  # (name, bilirubin mg/dL, albumin g/dL, expected score, grade, mALBI)
    ("A", 0.6, 4.2, -2.9026, 1, "1"),
    ("B", 0.8, 3.9, -2.5652, 2, "2a"),
    ("C", 1.2, 3.5, -2.1090, 2, "2b"),
    ("D", 3.0, 2.8, -1.2513, 3, "3"),
]


def assess(*resources):
    return assess_albi(b.record(*resources), b.TODAY, CURRENT_DAYS)


# -- the formula ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "bili", "alb", "expected", "grade", "malbi"), WORKED)
def test_albi_score_worked_examples_in_canonical_units(name, bili, alb, expected, grade, malbi):
    # conversion by hand: bilirubin µmol/L = mg/dL × 17.1; albumin g/L = g/dL × 10
    assert abs(albi_score(bili * 17.1, alb * 10) - expected) < TOL


def test_albi_example_c_arithmetic_spelled_out():
    # 1.2 × 17.1 = 20.52; log10(20.52) = 1.31218; × 0.66 = 0.86604; 35 × −0.085 = −2.975
    expected = 0.66 * math.log10(20.52) - 0.085 * 35
    assert abs(expected - (-2.10896)) < 1e-4
    assert abs(albi_score(20.52, 35) - expected) < 1e-9


@pytest.mark.parametrize(("name", "bili", "alb", "expected", "grade", "malbi"), WORKED)
def test_assess_albi_worked_examples_from_observations(name, bili, alb, expected, grade, malbi):
    result = assess(b.bilirubin(bili, "mg/dL", b.ago(3)), b.albumin(alb, "g/dL", b.ago(3)))
    assert result.status == "current"
    assert abs(result.score - expected) < TOL
    assert result.grade == grade
    assert result.malbi == malbi
    assert result.current_grade == grade
    assert abs(result.bilirubin_umol_per_l - bili * 17.1) < 1e-6
    assert abs(result.albumin_g_per_l - alb * 10) < 1e-6


def test_albi_unit_round_trip_si_equals_conventional():
    si = assess(b.bilirubin(20.52, "umol/L", b.ago(2), code="14631-6"), b.albumin(35, "g/L", b.ago(2)))
    conventional = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(2)))
    assert abs(si.score - (-2.1090)) < TOL
    assert abs(si.score - conventional.score) < 1e-9
    assert (si.grade, si.malbi) == (conventional.grade, conventional.malbi) == (2, "2b")


def test_albi_mixed_units():
    result = assess(b.bilirubin(20.52, "umol/L", b.ago(2), code="14631-6"), b.albumin(3.5, "g/dL", b.ago(2)))
    assert abs(result.score - (-2.1090)) < TOL


@pytest.mark.parametrize("code", ["61151-7", "61152-5", "2862-1", "76631-1"])
def test_other_mass_albumin_codes_are_used(code):
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(2), code=code))
    assert abs(result.score - (-2.1090)) < TOL


@pytest.mark.parametrize("code", ["42719-5", "59827-6", "59828-4"])
def test_other_mass_bilirubin_codes_are_used(code):
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2), code=code), b.albumin(3.5, "g/dL", b.ago(2)))
    assert abs(result.score - (-2.1090)) < TOL


# -- grade boundaries (graded from the unrounded score) ---------------------------------------------
def test_albi_grade_1_at_minus_2_60():
    assert albi_grade(-2.60) == 1


def test_albi_grade_2_just_above_minus_2_60():
    assert albi_grade(-2.5999) == 2


def test_albi_grade_2_at_minus_1_39():
    assert albi_grade(-1.39) == 2


def test_albi_grade_3_just_above_minus_1_39():
    assert albi_grade(-1.3899) == 3


def test_malbi_2a_at_minus_2_27():
    assert malbi_grade(-2.27) == "2a"


def test_malbi_2b_just_above_minus_2_27():
    assert malbi_grade(-2.2699) == "2b"


def test_malbi_outside_grade_2_is_the_plain_grade():
    assert malbi_grade(-3.0) == "1"
    assert malbi_grade(-1.0) == "3"
    assert malbi_grade(-2.5999) == "2a"
    assert malbi_grade(-1.39) == "2b"


def test_grade_from_unrounded_score_not_the_two_decimal_display():
    # both scores display as −2.60; only the unrounded one decides
    assert albi_grade(-2.6049) == 1
    assert albi_grade(-2.5951) == 2


# -- which observations are used ------------------------------------------------------------------
def test_albi_date_is_the_older_of_the_two():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(12)), b.albumin(3.5, "g/dL", b.ago(5)))
    assert result.date.isoformat() == b.ago(12)


def test_albi_current_at_30_days():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(30)), b.albumin(3.5, "g/dL", b.ago(30)))
    assert result.status == "current"
    assert result.current_grade == 2


def test_albi_stale_when_albumin_older_than_30_days():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(31)))
    assert result.status == "stale"
    assert abs(result.score - (-2.1090)) < TOL  # still shown
    assert result.current_grade is None  # never treated as current
    assert any(p.concept == "albumin" and p.kind == "stale" for p in result.problems)


def test_albi_stale_when_bilirubin_older_than_30_days():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(45)), b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.status == "stale"
    assert result.current_grade is None
    assert any(p.concept == "bilirubin" and p.kind == "stale" for p in result.problems)


def test_most_recent_value_wins():
    result = assess(b.bilirubin(0.6, "mg/dL", b.ago(60)), b.albumin(4.2, "g/dL", b.ago(60)),
                    b.bilirubin(3.0, "mg/dL", b.ago(3)), b.albumin(2.8, "g/dL", b.ago(3)))
    assert abs(result.score - (-1.2513)) < TOL  # example D, not A
    assert result.grade == 3


def test_implausible_albumin_skipped_and_next_usable_value_used():
    # 45 g/dL (= 450 g/L) is outside 0.5–7.0 g/dL; the older 3.5 g/dL is used -> example C
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(45, "g/dL", b.ago(2)),
                    b.albumin(3.5, "g/dL", b.ago(10)))
    assert abs(result.score - (-2.1090)) < TOL
    assert result.date.isoformat() == b.ago(10)
    assert any(p.concept == "albumin" and p.kind == "implausible" for p in result.problems)


def test_implausible_bilirubin_skipped():
    # 60 mg/dL is outside 0.05–50 mg/dL
    result = assess(b.bilirubin(60, "mg/dL", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.score is None
    assert result.status == "implausible"
    assert any(p.concept == "bilirubin" and p.kind == "implausible" for p in result.problems)


def test_albumin_without_unit_is_never_guessed():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(3.5, None, b.ago(2)))
    assert result.score is None
    assert result.grade is None
    assert any(p.concept == "albumin" and p.kind == "unknown-unit" for p in result.problems)


def test_albumin_with_unknown_unit_is_never_guessed_older_known_value_used():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.albumin(3.9, "xyz", b.ago(2)),
                    b.albumin(3.5, "g/dL", b.ago(8)))
    assert abs(result.score - (-2.1090)) < TOL
    assert any(p.concept == "albumin" and p.kind == "unknown-unit" for p in result.problems)


def test_bilirubin_with_unknown_unit_is_never_guessed():
    result = assess(b.bilirubin(1.2, "mg%", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.score is None
    assert any(p.concept == "bilirubin" and p.kind == "unknown-unit" for p in result.problems)


def test_molar_albumin_54347_0_is_never_used():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.observation("54347-0", 530, "umol/L", b.ago(2)))
    assert result.score is None
    assert result.albumin_g_per_l is None
    assert result.status == "missing"


def test_molar_albumin_newer_does_not_hide_the_older_mass_albumin():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(2)), b.observation("54347-0", 400, "umol/L", b.ago(1)),
                    b.albumin(3.5, "g/dL", b.ago(5)))
    assert abs(result.score - (-2.1090)) < TOL


def test_indirect_bilirubin_1971_1_is_never_used():
    result = assess(b.observation("1971-1", 0.6, "mg/dL", b.ago(2)), b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.score is None
    assert result.status == "missing"


def test_indirect_bilirubin_newer_does_not_replace_total():
    result = assess(b.observation("1971-1", 0.2, "mg/dL", b.ago(1)), b.bilirubin(1.2, "mg/dL", b.ago(4)),
                    b.albumin(3.5, "g/dL", b.ago(4)))
    assert abs(result.score - (-2.1090)) < TOL


@pytest.mark.parametrize("status", ["preliminary", "cancelled", "entered-in-error"])
def test_non_final_observation_ignored(status):
    # the newer non-final pair (example D values) must not replace the final pair (example C)
    result = assess(b.bilirubin(3.0, "mg/dL", b.ago(1), status=status), b.albumin(2.8, "g/dL", b.ago(1), status=status),
                    b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)))
    assert abs(result.score - (-2.1090)) < TOL


def test_missing_inputs_give_missing_not_a_guess():
    result = assess(b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.status == "missing"
    assert result.score is None and result.grade is None and result.current_grade is None
    assert any(p.concept == "bilirubin" and p.kind == "missing" for p in result.problems)


# -- trend ------------------------------------------------------------------------------------------
def test_trend_shown_when_more_than_one_pair():
    result = assess(b.bilirubin(0.6, "mg/dL", b.ago(90)), b.albumin(4.2, "g/dL", b.ago(90)),
                    b.bilirubin(1.2, "mg/dL", b.ago(3)), b.albumin(3.5, "g/dL", b.ago(3)))
    assert [p.date.isoformat() for p in result.trend] == [b.ago(3), b.ago(90)]
    assert abs(result.trend[0].score - (-2.1090)) < TOL and result.trend[0].grade == 2
    assert abs(result.trend[1].score - (-2.9026)) < TOL and result.trend[1].grade == 1


def test_no_trend_with_a_single_pair():
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(3)), b.albumin(3.5, "g/dL", b.ago(3)))
    assert result.trend == ()


def test_no_trend_when_values_never_share_a_date():
    # two albumins and two bilirubins, but only one date with both
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(3)), b.albumin(3.5, "g/dL", b.ago(3)),
                    b.bilirubin(0.6, "mg/dL", b.ago(40)), b.albumin(4.2, "g/dL", b.ago(41)))
    assert result.trend == ()


def test_future_dated_value_is_not_used():
    result = assess(b.bilirubin(3.0, "mg/dL", b.ago(-5)), b.bilirubin(1.2, "mg/dL", b.ago(3)),
                    b.albumin(3.5, "g/dL", b.ago(3)))
    assert abs(result.score - (-2.1090)) < TOL
    assert any(p.concept == "bilirubin" and p.kind == "implausible" for p in result.problems)


def test_category_does_not_select_data():
    obs = b.albumin(3.5, "g/dL", b.ago(3))
    obs["category"] = [b.concept("vital-signs", "http://terminology.hl7.org/CodeSystem/observation-category")]
    result = assess(b.bilirubin(1.2, "mg/dL", b.ago(3)), obs)
    assert abs(result.score - (-2.1090)) < TOL
