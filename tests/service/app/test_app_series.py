"""The app's adapter to the core: every ALBI pair (the card shows only the latest), ECOG, AFP, lesion sums."""

from __future__ import annotations

import math

from cards.policy import default_policy
from service.app import series
from tests.cards import builders as b


def test_every_albumin_bilirubin_pair_is_a_point_oldest_first() -> None:
    resources = []
    for month in range(8):  # more pairs than the card's trend keeps
        resources += [b.albumin(3.5, "g/dL", b.ago(30 * month + 1)), b.bilirubin(1.2, "mg/dL", b.ago(30 * month + 1))]
    resources.append(b.albumin(4.0, "g/dL", b.ago(400)))  # albumin without bilirubin that day: no pair
    points = series.albi_pairs(b.record(*resources))
    assert len(points) == 8
    assert [p["date"] for p in points] == sorted(p["date"] for p in points)
    expected = 0.66 * math.log10(1.2 * 17.1) - 0.085 * 35.0  # Johnson 2015, worked check −2.11
    assert points[0]["score"] == round(expected, 2) == -2.11
    assert points[0]["grade"] == 2 and points[0]["mAlbiGrade"] == "2b"


def test_implausible_values_make_no_pair() -> None:
    resources = [b.albumin(35.0, "g/dL", b.ago(5)), b.bilirubin(1.0, "mg/dL", b.ago(5))]  # 350 g/L
    assert series.albi_pairs(b.record(*resources)) == []


def test_ecog_and_karnofsky_series() -> None:
    points = series.ecog_series(b.record(b.ecog(1, b.ago(40)), b.karnofsky(60, b.ago(10)), b.ecog(7, b.ago(5))))
    assert [(p["value"], p["source"]) for p in points] == [(1, "ECOG"), (2, "Karnofsky 60")]


def test_afp_in_ng_per_ml_only() -> None:
    points = series.afp_series(b.record(b.afp(850, "ng/mL", b.ago(3)), b.afp(12, "[IU]/mL", b.ago(2), code="19176-7")))
    assert [p["value"] for p in points] == [850.0]


def test_lesion_sums_per_scan_date() -> None:
    from datetime import date

    from cards.progression import Lesion

    lesions = (Lesion("a", "liver", "a", ((date(2026, 1, 1), 20.0), (date(2026, 3, 1), 30.0)), True, False, None),
               Lesion("b", "lung", "b", ((date(2026, 3, 1), 12.0),), True, True, date(2026, 3, 1)))
    assert series.lesion_sums(lesions) == [{"date": "2026-01-01", "mm": 20.0, "lesions": 1},
                                           {"date": "2026-03-01", "mm": 42.0, "lesions": 2}]


def test_run_core_matches_the_hook_pipeline() -> None:
    resources = [b.patient()]
    result = series.run_core(resources, b.NOW, b.PATIENT_ID, policy=default_policy())
    assert result.cards == [] and result.second_line is None  # no HCC: no cards, as patient-view
    assert any("30 days" in value for _what, value in result.policy)
