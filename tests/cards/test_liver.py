"""cards.liver: Child-Pugh points, score, class and "minimum" (clinical-rules.md §2 "Child-Pugh";
clinical-codes.md §7.7), at every boundary of /work/notes/boundary-cases.json (hand-computed from the rules).

Points: bilirubin < 2 / 2–3 / > 3 mg/dL; albumin > 3.5 / 2.8–3.5 / < 2.8 g/dL; INR < 1.7 / 1.7–2.3 / > 2.3 →
1/2/3; ascites, encephalopathy: none recorded 1, active coded Condition 2, severe (SNOMED 24484000) 3.
Class A 5–6, B 7–9, C 10–15. Baseline inputs (each 1 point): bilirubin 1.0 mg/dL, albumin 3.8 g/dL, INR 1.2.
"""

from __future__ import annotations

import pytest

from cards.assessment import assess
from cards.context import EvaluationContext
from cards.liver import child_pugh_class
from cards.patient_view import evaluate
from tests.cards import builders as b

RECENT = b.ago(3)
SEVERE = "24484000"


def inr(value: float, when: str = RECENT, unit: str | None = "{INR}") -> dict:
    return b.observation("6301-6", value, unit, when)


def child_pugh(*extra: dict, bili=(1.0, "mg/dL"), alb=(3.8, "g/dL"), inr_value: float | None = 1.2):
    resources = [b.bilirubin(*bili, RECENT), b.albumin(*alb, RECENT), *extra]
    if inr_value is not None:
        resources.append(inr(inr_value))
    return assess(b.record(*resources), EvaluationContext(b.NOW)).child_pugh


def points(result) -> dict[str, int]:
    return dict(result.points)


# -- bilirubin -----------------------------------------------------------------------------------------
def test_child_pugh_bilirubin_1_point_just_below_2_0():
    assert points(child_pugh(bili=(1.99, "mg/dL")))["bilirubin"] == 1


def test_child_pugh_bilirubin_2_points_at_2_0():
    assert points(child_pugh(bili=(2.0, "mg/dL")))["bilirubin"] == 2


def test_child_pugh_bilirubin_2_points_at_3_0():
    # unit trap: 3.0 × 17.1 = 51.300000000000004 µmol/L in floating point; 3.0 mg/dL is still "2–3"
    assert points(child_pugh(bili=(3.0, "mg/dL")))["bilirubin"] == 2


def test_child_pugh_bilirubin_3_points_just_above_3_0():
    assert points(child_pugh(bili=(3.01, "mg/dL")))["bilirubin"] == 3


def test_child_pugh_bilirubin_2_points_at_34_2_umol_per_l():
    assert points(child_pugh(bili=(34.2, "umol/L")))["bilirubin"] == 2  # = 2.0 mg/dL


def test_child_pugh_bilirubin_1_point_at_34_0_umol_per_l():
    assert points(child_pugh(bili=(34.0, "umol/L")))["bilirubin"] == 1  # = 1.988 mg/dL


def test_child_pugh_bilirubin_2_points_at_51_3_umol_per_l():
    assert points(child_pugh(bili=(51.3, "umol/L")))["bilirubin"] == 2  # = 3.0 mg/dL


# -- albumin -------------------------------------------------------------------------------------------
def test_child_pugh_albumin_1_point_just_above_3_5():
    assert points(child_pugh(alb=(3.51, "g/dL")))["albumin"] == 1


def test_child_pugh_albumin_2_points_at_3_5():
    assert points(child_pugh(alb=(3.5, "g/dL")))["albumin"] == 2


def test_child_pugh_albumin_2_points_at_2_8():
    assert points(child_pugh(alb=(2.8, "g/dL")))["albumin"] == 2


def test_child_pugh_albumin_3_points_just_below_2_8():
    assert points(child_pugh(alb=(2.79, "g/dL")))["albumin"] == 3


@pytest.mark.parametrize("g_per_l", [35, 28])
def test_child_pugh_albumin_2_points_at_35_and_28_g_per_l(g_per_l):
    assert points(child_pugh(alb=(g_per_l, "g/L")))["albumin"] == 2


# -- INR -----------------------------------------------------------------------------------------------
def test_child_pugh_inr_1_point_just_below_1_7():
    assert points(child_pugh(inr_value=1.69))["inr"] == 1


def test_child_pugh_inr_2_points_at_1_7():
    assert points(child_pugh(inr_value=1.7))["inr"] == 2


def test_child_pugh_inr_2_points_at_2_3():
    assert points(child_pugh(inr_value=2.3))["inr"] == 2


def test_child_pugh_inr_3_points_just_above_2_3():
    assert points(child_pugh(inr_value=2.31))["inr"] == 3


@pytest.mark.parametrize("unit", ["{INR}", "1", None], ids=["curly-INR", "one", "no-unit"])
def test_child_pugh_inr_dimensionless_units_are_read(unit):
    result = child_pugh(inr(1.8, unit=unit), inr_value=None)
    assert result.status == "computed" and points(result)["inr"] == 2


# -- ascites and encephalopathy; minimum ------------------------------------------------------------
def test_child_pugh_ascites_not_recorded_is_1_point_and_a_minimum():
    result = child_pugh()
    assert points(result)["ascites"] == 1 and points(result)["encephalopathy"] == 1
    assert result.minimum
    assert result.label.startswith("at least ")


def test_child_pugh_ascites_active_is_2_points():
    assert points(child_pugh(b.condition("R18.8", "2026-05-01")))["ascites"] == 2


def test_child_pugh_ascites_recurrence_severe_is_3_points():
    ascites = b.condition("R18.0", "2026-05-01", clinical="recurrence", severity=SEVERE)
    assert points(child_pugh(ascites))["ascites"] == 3


def test_child_pugh_resolved_ascites_counts_as_not_recorded():
    result = child_pugh(b.condition("R18.8", "2026-01-01", clinical="resolved"))
    assert points(result)["ascites"] == 1 and result.minimum


def test_child_pugh_encephalopathy_active_is_2_points():
    assert points(child_pugh(b.condition("K76.82", "2026-05-01")))["encephalopathy"] == 2


def test_child_pugh_with_ascites_and_encephalopathy_active_is_not_a_minimum():
    result = child_pugh(b.condition("R18.8", "2026-05-01"), b.condition("K76.82", "2026-05-01"))
    assert points(result) == {"bilirubin": 1, "albumin": 1, "inr": 1, "ascites": 2, "encephalopathy": 2}
    assert (result.score, result.grade, result.minimum) == (7, "B", False)


def test_child_pugh_entered_in_error_ascites_does_not_count():
    ascites = b.condition("R18.8", "2026-05-01", verification="entered-in-error")
    assert points(child_pugh(ascites))["ascites"] == 1


# -- score and class -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("score", "grade"), [(5, "A"), (6, "A"), (7, "B"), (9, "B"), (10, "C"), (15, "C")])
def test_child_pugh_class_boundaries(score, grade):
    assert child_pugh_class(score) == grade


@pytest.mark.parametrize(("kwargs", "extra", "score", "grade"), [
    ({}, (), 5, "A"),
    ({"bili": (2.0, "mg/dL")}, (), 6, "A"),
    ({"bili": (2.0, "mg/dL"), "alb": (3.0, "g/dL")}, (), 7, "B"),
    ({"bili": (3.5, "mg/dL"), "alb": (3.0, "g/dL"), "inr_value": 2.0}, (), 9, "B"),
    ({"bili": (3.5, "mg/dL"), "alb": (2.5, "g/dL"), "inr_value": 2.0}, (), 10, "C"),
    ({"bili": (3.5, "mg/dL"), "alb": (2.5, "g/dL"), "inr_value": 2.5},
     ("ascites-severe", "encephalopathy-severe"), 15, "C"),
], ids=["A5", "A6", "B7", "B9", "C10", "C15"])
def test_child_pugh_score_and_class_from_records(kwargs, extra, score, grade):
    conditions = {"ascites-severe": b.condition("R18.8", "2026-05-01", severity=SEVERE),
                  "encephalopathy-severe": b.condition("K76.82", "2026-05-01", severity=SEVERE)}
    result = child_pugh(*(conditions[name] for name in extra), **kwargs)
    assert (result.score, result.grade) == (score, grade)


def test_child_pugh_fixture_example_b8_minimum():
    # 2.4 mg/dL (2) + 3.0 g/dL (2) + INR 1.9 (2) + 1 + 1 = 8, class B, a minimum
    result = child_pugh(bili=(2.4, "mg/dL"), alb=(3.0, "g/dL"), inr_value=1.9)
    assert points(result) == {"bilirubin": 2, "albumin": 2, "inr": 2, "ascites": 1, "encephalopathy": 1}
    assert (result.score, result.grade, result.minimum) == (8, "B", True)


# -- not computable ------------------------------------------------------------------------------------
def test_child_pugh_without_inr_is_not_computable():
    result = child_pugh(inr_value=None)
    assert result.status == "not-computable" and result.score is None
    assert "inr" in result.missing


def test_child_pugh_with_stale_inr_is_not_computable():
    result = child_pugh(inr(1.2, when=b.ago(45)), inr_value=None)
    assert result.status == "not-computable"


def test_child_pugh_without_inr_the_data_quality_card_offers_an_inr_order():
    resources = [b.patient(), b.condition("C22.0", "2025-09-01"),
                 b.med_statement("atezolizumab", "2025-10-01", "2026-03-01", status_reason="266721009"),
                 b.bilirubin(1.0, "mg/dL", RECENT), b.albumin(3.8, "g/dL", RECENT), b.ecog(1, RECENT)]
    cards = evaluate(resources, b.NOW, b.PATIENT_ID).cards
    quality = next(c for c in cards if c["source"]["topic"]["code"] == "data-quality")
    created = [action["resource"] for s in quality.get("suggestions", []) for action in s.get("actions", [])
               if action.get("type") == "create"]
    codes = {c["code"] for r in created for c in r.get("code", {}).get("coding", [])}
    assert "6301-6" in codes
