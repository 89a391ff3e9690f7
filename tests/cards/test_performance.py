"""cards.performance: ECOG, else Karnofsky mapped to ECOG (clinical-rules.md §1–§2; clinical-codes.md §2.3–2.4)."""

from __future__ import annotations

import pytest

from cards.performance import assess_performance, karnofsky_to_ecog
from tests.cards import builders as b

CURRENT_DAYS = 30


def assess(*resources):
    return assess_performance(b.record(*resources), b.TODAY, CURRENT_DAYS)


# -- ECOG encodings --------------------------------------------------------------------------------
@pytest.mark.parametrize("grade", [0, 1, 2, 3, 4, 5])
def test_ecog_from_value_integer(grade):
    result = assess(b.ecog(grade, b.ago(5)))
    assert (result.status, result.value, result.source, result.current_value) == ("current", grade, "ecog", grade)


@pytest.mark.parametrize(("answer", "grade"), [("LA9622-7", 0), ("LA9623-5", 1), ("LA9624-3", 2), ("LA9625-0", 3),
                                               ("LA9626-8", 4), ("LA9627-6", 5)])
def test_ecog_from_loinc_answer_in_value(answer, grade):
    obs = b.observation("89247-1", when=b.ago(5), value_concept=b.concept(answer, b.LOINC))
    assert assess(obs).current_value == grade


@pytest.mark.parametrize(("answer", "grade"), [("425389002", 0), ("422512005", 1), ("422894000", 2),
                                               ("423053003", 3), ("423237006", 4), ("423409001", 5)])
def test_ecog_from_snomed_answer_in_value(answer, grade):
    obs = b.observation("89247-1", when=b.ago(5), value_concept=b.concept(answer, b.SNOMED))
    assert assess(obs).current_value == grade


def test_ecog_from_loinc_answer_in_interpretation():
    obs = b.observation("89247-1", when=b.ago(5), interpretation=b.concept("LA9624-3", b.LOINC))
    assert assess(obs).current_value == 2


def test_ecog_from_snomed_answer_in_interpretation():
    obs = b.observation("89247-1", when=b.ago(5), interpretation=b.concept("423053003", b.SNOMED))
    assert assess(obs).current_value == 3


def test_value_integer_preferred_over_interpretation():
    obs = b.observation("89247-1", when=b.ago(5), value_integer=1, interpretation=b.concept("LA9622-7", b.LOINC))
    assert assess(obs).current_value == 1


# -- Karnofsky -> ECOG (standard oBDS/MII map) ----------------------------------------------------
@pytest.mark.parametrize(("kps", "grade"), [
    (100, 0), (90, 0), (80, 1), (70, 1), (60, 2), (50, 2), (40, 3), (30, 3), (20, 4), (10, 4), (0, 5),
])
def test_karnofsky_mapping_every_decade(kps, grade):
    assert karnofsky_to_ecog(kps) == grade
    result = assess(b.karnofsky(kps, b.ago(5)))
    assert (result.status, result.value, result.source, result.karnofsky) == ("current", grade, "karnofsky", kps)


def test_karnofsky_from_loinc_answer():
    obs = b.observation("89243-0", when=b.ago(5), value_concept=b.concept("LA29179-1", b.LOINC))  # KPS 60
    result = assess(obs)
    assert (result.value, result.karnofsky, result.source) == (2, 60, "karnofsky")


def test_karnofsky_60_is_the_ecog_2_threshold_and_70_is_not():
    assert assess(b.karnofsky(60, b.ago(3))).current_value == 2
    assert assess(b.karnofsky(70, b.ago(3))).current_value == 1


# -- choice between sources ----------------------------------------------------------------------------
def test_ecog_preferred_over_karnofsky_when_both_current():
    # the Karnofsky is newer, but a current ECOG wins
    result = assess(b.ecog(1, b.ago(20)), b.karnofsky(50, b.ago(2)))
    assert (result.value, result.source, result.status) == (1, "ecog", "current")


def test_current_karnofsky_used_when_ecog_is_stale():
    result = assess(b.ecog(0, b.ago(60)), b.karnofsky(50, b.ago(2)))
    assert (result.value, result.source, result.status) == (2, "karnofsky", "current")


def test_most_recent_ecog_wins():
    result = assess(b.ecog(1, b.ago(20)), b.ecog(3, b.ago(2)))
    assert result.current_value == 3


def test_stale_ecog_is_stale_and_never_current():
    result = assess(b.ecog(3, b.ago(31)))
    assert result.status == "stale"
    assert result.value == 3  # may be shown
    assert result.current_value is None  # never treated as current
    assert any(p.kind == "stale" for p in result.problems)


def test_ecog_at_30_days_is_current():
    assert assess(b.ecog(2, b.ago(30))).current_value == 2


def test_stale_karnofsky_is_stale():
    result = assess(b.karnofsky(40, b.ago(45)))
    assert result.status == "stale"
    assert result.current_value is None


# -- plausibility and missing -----------------------------------------------------------------------
def test_karnofsky_65_is_implausible():
    result = assess(b.karnofsky(65, b.ago(3)))
    assert result.status == "implausible"
    assert result.current_value is None
    assert any(p.kind == "implausible" for p in result.problems)


def test_ecog_7_is_implausible():
    result = assess(b.ecog(7, b.ago(3)))
    assert result.status == "implausible"
    assert result.current_value is None
    assert any(p.kind == "implausible" for p in result.problems)


def test_implausible_newest_ecog_skipped_for_older_current_one():
    result = assess(b.ecog(7, b.ago(1)), b.ecog(1, b.ago(10)))
    assert result.current_value == 1
    assert any(p.kind == "implausible" for p in result.problems)


def test_karnofsky_110_is_implausible():
    assert assess(b.karnofsky(110, b.ago(3))).status == "implausible"


def test_missing_performance_status():
    result = assess(b.albumin(3.5, "g/dL", b.ago(2)))
    assert result.status == "missing"
    assert result.value is None and result.current_value is None
    assert any(p.kind == "missing" for p in result.problems)


def test_preliminary_ecog_is_ignored():
    result = assess(b.ecog(3, b.ago(1), status="preliminary"), b.ecog(1, b.ago(5)))
    assert result.current_value == 1
