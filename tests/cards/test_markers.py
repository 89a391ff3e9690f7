"""cards.markers: AFP and body weight (clinical-rules.md §1; clinical-codes.md §2.5–2.6)."""

from __future__ import annotations

import pytest

from cards.markers import assess_afp, assess_weight
from tests.cards import builders as b

CURRENT_DAYS = 30
LB_TO_KG = 0.45359237  # exact definition of the avoirdupois pound


def afp_of(*resources):
    return assess_afp(b.record(*resources), b.TODAY, CURRENT_DAYS)


def weight_of(*resources):
    return assess_weight(b.record(*resources), b.TODAY, CURRENT_DAYS)


# -- AFP ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["1834-1", "53962-7", "83073-7"])
def test_afp_mass_units_current(code):
    result = afp_of(b.afp(512, "ng/mL", b.ago(4), code=code))
    assert result.status == "current"
    assert result.ng_per_ml == 512
    assert result.current_value == 512
    assert result.date.isoformat() == b.ago(4)


def test_afp_ug_per_l_equals_ng_per_ml():
    assert afp_of(b.afp(450, "ug/L", b.ago(4))).current_value == 450


def test_afp_stale_is_not_current():
    result = afp_of(b.afp(512, "ng/mL", b.ago(31)))
    assert result.status == "stale"
    assert result.ng_per_ml == 512
    assert result.current_value is None


def test_afp_iu_newest_is_not_evaluated():
    result = afp_of(b.afp(800, "[IU]/mL", b.ago(2), code="19176-7"), b.afp(512, "ng/mL", b.ago(10)))
    assert result.status == "not-evaluated"
    assert result.current_value is None  # never converted into ng/mL
    assert any(p.kind == "not-evaluated" for p in result.problems)


@pytest.mark.parametrize("code", ["19176-7", "53961-9", "83072-9"])
def test_afp_iu_codes_alone_are_not_evaluated(code):
    result = afp_of(b.afp(800, "[IU]/mL", b.ago(2), code=code))
    assert result.status == "not-evaluated"
    assert result.current_value is None


def test_afp_mass_newer_than_iu_is_used():
    result = afp_of(b.afp(800, "[IU]/mL", b.ago(20), code="19176-7"), b.afp(120, "ng/mL", b.ago(2)))
    assert (result.status, result.current_value) == ("current", 120)


def test_afp_missing():
    result = afp_of(b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.status == "missing"
    assert result.current_value is None


def test_afp_unknown_unit_not_guessed():
    result = afp_of(b.afp(512, "xyz", b.ago(2)))
    assert result.current_value is None
    assert any(p.kind == "unknown-unit" for p in result.problems)


def test_afp_negative_is_implausible():
    result = afp_of(b.afp(-5, "ng/mL", b.ago(2)), b.afp(30, "ng/mL", b.ago(6)))
    assert result.current_value == 30
    assert any(p.kind == "implausible" for p in result.problems)


# -- weight ---------------------------------------------------------------------------------------------
def test_weight_kg():
    result = weight_of(b.weight(72, "kg", b.ago(3)))
    assert (result.status, result.kg, result.current_kg) == ("current", 72, 72)


def test_weight_lb_converted_to_kg():
    # 154 [lb_av] × 0.45359237 = 69.853 kg (≈ 69.85)
    expected = 154 * LB_TO_KG
    assert abs(expected - 69.85) < 0.01
    result = weight_of(b.weight(154, "[lb_av]", b.ago(3)))
    assert abs(result.kg - expected) < 0.01


def test_weight_g_converted_to_kg():
    result = weight_of(b.weight(70_000, "g", b.ago(3)))
    assert abs(result.kg - 70.0) < 1e-9


def test_weight_500_kg_implausible_and_skipped():
    result = weight_of(b.weight(500, "kg", b.ago(1)), b.weight(64, "kg", b.ago(7)))
    assert result.current_kg == 64
    assert any(p.kind == "implausible" for p in result.problems)


def test_weight_only_implausible():
    result = weight_of(b.weight(500, "kg", b.ago(1)))
    assert result.status == "implausible"
    assert result.current_kg is None


def test_weight_bounds_are_plausible():
    assert weight_of(b.weight(20, "kg", b.ago(1))).current_kg == 20
    assert weight_of(b.weight(300, "kg", b.ago(1))).current_kg == 300
    assert weight_of(b.weight(19.9, "kg", b.ago(1))).current_kg is None


def test_weight_stale():
    result = weight_of(b.weight(72, "kg", b.ago(40)))
    assert result.status == "stale"
    assert result.current_kg is None


def test_weight_without_unit_never_guessed():
    result = weight_of(b.weight(72, None, b.ago(1)))
    assert result.current_kg is None
    assert any(p.kind == "unknown-unit" for p in result.problems)


def test_weight_just_below_60_kg_stays_below_60():
    """The lenvatinib dose switches at 60 kg (8 mg < 60 kg): a weight of 59.99 kg must not become ≥ 60."""
    result = weight_of(b.weight(59.99, "kg", b.ago(1)))
    assert result.current_kg < 60
