"""cards.progression: progression evidence, lesion growth, pattern and hyperprogression
(clinical-rules.md §2 "Progression", "Lesion progression", "Progression pattern", "Hyperprogression";
clinical-codes.md §7).

First line: atezolizumab started 2026-01-10 (START) and still running, so the only progression evidence is
what each test adds. Pre-ICI scan: 2026-01-05. ``day(n)`` is START + n days.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cards.medications import first_line, medication_uses
from cards.progression import assess_progression, is_vascular_invasion, metastasis_organ
from tests.cards import builders as b

START = date(2026, 1, 10)
PRE = "2026-01-05"
LIVER, LUNG, BONE, ADRENAL, NODE, BRAIN = "10200004", "39607008", "272673000", "23451007", "59441001", "12738006"


def day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def assess(*resources, meds=None):
    meds = meds if meds is not None else [b.med_statement("atezolizumab", START, status="active")]
    rec = b.record(*meds, *resources)
    line = first_line(medication_uses(rec, b.TODAY))
    assert line is not None and line.start == START
    return assess_progression(rec, line)


def lesion(lesion_id: str, organ: str, *sizes: tuple[str, float], unit: str = "mm", **kwargs) -> list[dict]:
    """A BodyStructure and its TumorSize observations [(date, size), ...]."""
    return [b.body_structure(lesion_id, organ, **kwargs),
            *(b.tumor_size(lesion_id, size, when, unit=unit) for when, size in sizes)]


def by_key(result, key):
    return next(item for item in result.lesions if item.key == key)


# -- lesion growth: ≥ 20 % and ≥ 5 mm over nadir ------------------------------------------------------
def test_lesion_20_to_25_mm_progresses():
    # 25 / 20 = 1.25 (≥ 1.20) and 25 − 20 = 5 mm (≥ 5)
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(120), 25)))
    assert by_key(result, "l1").progressing
    assert by_key(result, "l1").progression_date == date.fromisoformat(day(120))
    assert result.documented
    assert result.progressing_lesions == 1


def test_lesion_30_to_35_mm_does_not_progress():
    # 35 / 30 = 1.167 (< 1.20) although + 5 mm
    result = assess(*lesion("l1", LIVER, (PRE, 30), (day(120), 35)))
    assert not by_key(result, "l1").progressing
    assert not result.documented
    assert result.pattern == "not-documented"
    assert result.progressing_lesions == 0


def test_lesion_10_to_13_mm_does_not_progress():
    # 13 / 10 = 1.30 (≥ 1.20) but only + 3 mm
    result = assess(*lesion("l1", LIVER, (PRE, 10), (day(120), 13)))
    assert not by_key(result, "l1").progressing
    assert not result.documented


@pytest.mark.parametrize(("before", "after"), [(25, 30), (35, 42), (45, 54), (15, 20)])
def test_lesion_growth_exactly_at_the_thresholds_progresses(before, after):
    # 25→30: +20 %, +5 mm; 35→42: +20 %, +7 mm; 45→54: +20 %, +9 mm; 15→20: +33 %, +5 mm
    assert by_key(assess(*lesion("l1", LIVER, (PRE, before), (day(120), after))), "l1").progressing


@pytest.mark.parametrize(("before", "after"), [(25, 29.9), (40, 47.9), (15, 19.9)])
def test_lesion_growth_just_below_a_threshold_does_not_progress(before, after):
    # 25→29.9: +19.6 %; 40→47.9: +19.75 %; 15→19.9: +4.9 mm
    assert not by_key(assess(*lesion("l1", LIVER, (PRE, before), (day(120), after))), "l1").progressing


def test_lesion_sizes_in_cm_are_converted():
    # 2.0 cm → 2.5 cm = 20 mm → 25 mm
    result = assess(*lesion("l1", LIVER, (PRE, 2.0), (day(120), 2.5), unit="cm"))
    assert by_key(result, "l1").progressing
    assert by_key(result, "l1").measurements[-1][1] == pytest.approx(25.0)


def test_nadir_tracking_shrinks_then_regrows():
    # 40 → 30 (response) → 36: +20 % and +6 mm over the nadir 30, although below the 40 mm baseline
    result = assess(*lesion("l1", LIVER, (PRE, 40), (day(60), 30), (day(150), 36)))
    assert by_key(result, "l1").progressing
    assert by_key(result, "l1").progression_date == date.fromisoformat(day(150))


def test_nadir_tracking_regrowth_below_threshold():
    # 40 → 30 → 35: +16.7 % over the nadir
    assert not by_key(assess(*lesion("l1", LIVER, (PRE, 40), (day(60), 30), (day(150), 35))), "l1").progressing


def test_nadir_starts_at_last_pre_ici_measurement():
    # 20 (old scan) → 30 (last pre-ICI) → 33: +10 % over 30; an older pre-ICI value is not the nadir
    result = assess(*lesion("l1", LIVER, ("2025-06-01", 20), (PRE, 30), (day(120), 33)))
    assert not by_key(result, "l1").progressing


def test_new_lesion_after_ici_start_progresses():
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(120), 20)), *lesion("l2", LUNG, (day(120), 8)))
    new = by_key(result, "l2")
    assert new.new and new.progressing
    assert new.progression_date == date.fromisoformat(day(120))
    assert not by_key(result, "l1").progressing
    assert result.organs == ("lung",)


def test_lesion_first_measured_on_ici_start_day_is_not_new():
    result = assess(*lesion("l1", LIVER, (START.isoformat(), 20), (day(120), 21)))
    assert not by_key(result, "l1").new
    assert not result.documented


# -- organs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("snomed", "organ"), [(LIVER, "liver"), (LUNG, "lung"), (BONE, "bone"),
                                               (ADRENAL, "adrenal"), (NODE, "lymph-node"),
                                               ("15425007", "peritoneum"), (BRAIN, "brain")])
def test_lesion_organ_from_body_structure_location(snomed, organ):
    result = assess(*lesion("l1", snomed, (day(120), 10)))
    assert by_key(result, "l1").organ == organ
    assert result.organs == (organ,)


def test_lesion_organ_from_location_text():
    result = assess(*lesion("l1", None, (day(120), 10), location_text="Right lung, lower lobe"))
    assert by_key(result, "l1").organ == "lung"


def test_lesion_without_known_organ_is_other():
    result = assess(*lesion("l1", "71854001", (day(120), 10)))  # colon structure
    assert by_key(result, "l1").organ == "other"


@pytest.mark.parametrize(("code", "organ"), [("C78.01", "lung"), ("C78.00", "lung"), ("C79.51", "bone"),
                                             ("C79.71", "adrenal"), ("C77.2", "lymph-node"), ("C78.6", "peritoneum"),
                                             ("C79.31", "brain"), ("C78.7", "liver"), ("C79.9", "other"),
                                             ("C7B.00", "other")])
def test_metastasis_organ_from_icd10(code, organ):
    assert metastasis_organ(b.concept(code, b.ICD10CM)) == organ


@pytest.mark.parametrize(("code", "organ"), [("94391008", "lung"), ("94222008", "bone"), ("94161006", "adrenal"),
                                             ("94381002", "liver"), ("94225005", "brain"), ("128462008", "other")])
def test_metastasis_organ_from_snomed(code, organ):
    assert metastasis_organ(b.concept(code, b.SNOMED)) == organ


def test_hcc_is_not_a_metastasis_and_i81_is_vascular_invasion():
    assert metastasis_organ(b.concept("C22.0", b.ICD10CM)) is None
    assert is_vascular_invasion(b.concept("I81", b.ICD10CM))
    assert not is_vascular_invasion(b.concept("I80.1", b.ICD10CM))


# -- oligoprogression ------------------------------------------------------------------------------------
def _growing(lesion_id, organ, when=120):
    return lesion(lesion_id, organ, (PRE, 20), (day(when), 30))


def _stable(lesion_id, organ):
    return lesion(lesion_id, organ, (PRE, 20), (day(120), 20))


def test_oligoprogression_two_lesions_one_organ_after_90_days():
    result = assess(*_growing("l1", LIVER), *_growing("l2", LIVER), *_stable("l3", LIVER))
    assert result.pattern == "oligoprogression"
    assert result.progressing_lesions == 2
    assert result.organs == ("liver",)
    assert not result.new_vascular_invasion


def test_oligoprogression_at_exactly_90_days():
    assert assess(*_growing("l1", LIVER, when=90)).pattern == "oligoprogression"


def test_not_oligoprogression_at_89_days():
    result = assess(*_growing("l1", LIVER, when=89))
    assert result.documented
    assert result.pattern != "oligoprogression"


def test_oligoprogression_with_five_progressing_lesions():
    result = assess(*(item for n in range(5) for item in _growing(f"l{n}", LIVER)))
    assert result.pattern == "oligoprogression"
    assert result.progressing_lesions == 5


def test_systemic_with_six_progressing_lesions():
    result = assess(*(item for n in range(6) for item in _growing(f"l{n}", LIVER)))
    assert result.pattern == "systemic"
    assert result.progressing_lesions == 6


def test_oligoprogression_in_three_organs():
    result = assess(*_growing("l1", LIVER), *_growing("l2", LUNG), *_growing("l3", BONE))
    assert result.pattern == "oligoprogression"
    assert set(result.organs) == {"liver", "lung", "bone"}


def test_systemic_with_lesions_in_four_organs():
    result = assess(*_growing("l1", LIVER), *_growing("l2", LUNG), *_growing("l3", BONE), *_growing("l4", ADRENAL))
    assert result.pattern == "systemic"
    assert len(result.organs) == 4


def test_new_metastases_in_two_organs_are_systemic():
    result = assess(b.condition("C78.01", day(120)), b.condition("C79.51", day(120)))
    assert result.documented
    assert result.pattern == "systemic"
    assert set(result.new_metastasis_organs) == {"lung", "bone"}
    assert result.date == date.fromisoformat(day(120))


def test_new_metastasis_in_one_organ_is_not_systemic():
    result = assess(b.condition("C78.01", day(120)))
    assert result.documented
    assert result.pattern == "indeterminate"  # no lesion data: cannot be oligoprogression either
    assert result.new_metastasis_organs == ("lung",)


def test_metastasis_in_an_organ_already_involved_before_ici_is_not_new():
    result = assess(b.condition("C78.01", "2025-11-01"), b.condition("C78.02", day(120)))
    assert result.new_metastasis_organs == ()
    assert not result.documented


def test_metastasis_before_ici_start_is_not_progression():
    result = assess(b.condition("C78.01", "2025-11-01"), b.condition("C79.51", "2025-11-01"))
    assert not result.documented
    assert result.pattern == "not-documented"


# -- new vascular invasion and pattern precedence ------------------------------------------------------
def test_new_vascular_invasion_after_ici_start():
    result = assess(b.condition("I81", day(100)))
    assert result.new_vascular_invasion
    assert result.pattern == "new-vascular-invasion"
    assert result.documented
    assert result.date == date.fromisoformat(day(100))


def test_prior_vascular_invasion_before_ici_is_not_new():
    result = assess(b.condition("I81", "2025-12-01"), b.condition("I81", day(100)))
    assert not result.new_vascular_invasion
    assert result.pattern != "new-vascular-invasion"


def test_systemic_beats_new_vascular_invasion_which_is_still_reported():
    result = assess(b.condition("I81", day(100)), b.condition("C78.01", day(120)), b.condition("C79.51", day(120)))
    assert result.pattern == "systemic"
    assert result.new_vascular_invasion


def test_new_vascular_invasion_beats_oligoprogression():
    result = assess(*_growing("l1", LIVER), b.condition("I81", day(100)))
    assert result.pattern == "new-vascular-invasion"
    assert result.new_vascular_invasion
    assert result.progressing_lesions == 1


def test_oligoprogression_beats_indeterminate():
    # a worsened disease status alone is indeterminate; with lesion data showing oligoprogression it is oligo
    result = assess(b.disease_status("271299001", day(120)), *_growing("l1", LIVER, when=120))
    assert result.pattern == "oligoprogression"


# -- other evidence -------------------------------------------------------------------------------------
def test_disease_status_worsened_only_is_indeterminate():
    result = assess(b.disease_status("271299001", day(100)))
    assert result.documented
    assert result.pattern == "indeterminate"
    assert result.date == date.fromisoformat(day(100))
    assert result.progressing_lesions is None
    assert "lesion" in result.reason.lower()  # says which data would settle it


def test_legacy_disease_status_code_88040_1_counts():
    assert assess(b.disease_status("271299001", day(100), code="88040-1")).documented


@pytest.mark.parametrize("value", ["359746009", "268910001", "709137006"])
def test_stable_improved_or_undetermined_status_is_not_progression(value):
    assert not assess(b.disease_status(value, day(100))).documented


def test_worsened_status_before_ici_start_is_not_progression():
    assert not assess(b.disease_status("271299001", "2025-12-20")).documented


def test_stop_for_no_response_is_progression():
    meds = [b.med_statement("atezolizumab", START, day(150), status_reason="266721009")]
    result = assess(meds=meds)
    assert result.documented
    assert result.pattern == "indeterminate"
    assert result.date == date.fromisoformat(day(150))


def test_progression_date_is_the_earliest_evidence():
    result = assess(b.disease_status("271299001", day(130)), b.condition("C78.01", day(110)),
                    *_growing("l1", LIVER, when=120))
    assert result.date == date.fromisoformat(day(110))


def test_nothing_after_ici_start_is_not_documented():
    result = assess()
    assert not result.documented
    assert result.pattern == "not-documented"
    assert result.hyperprogression == "not-assessable"


# -- hyperprogression --------------------------------------------------------------------------------
def test_hyperprogression_yes_early_and_sum_over_50_percent():
    # 20 → 35 mm at day 40: +75 % (> 50 %), progression 40 days after start (< 60)
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(40), 35)))
    assert result.hyperprogression == "yes"
    assert result.sum_change == pytest.approx(0.75)


def test_hyperprogression_no_when_progression_at_60_days():
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(60), 35)))
    assert result.hyperprogression == "no"


def test_hyperprogression_yes_at_59_days():
    assert assess(*lesion("l1", LIVER, (PRE, 20), (day(59), 35))).hyperprogression == "yes"


def test_hyperprogression_no_when_sum_rises_exactly_50_percent():
    # 20 → 30: +50 %, not > 50 %
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(40), 30)))
    assert result.hyperprogression == "no"


def test_hyperprogression_uses_the_sum_of_lesions():
    # l1 20 → 35 (+75 %), l2 20 → 20: sum 40 → 55 = +37.5 %
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(40), 35)), *lesion("l2", LIVER, (PRE, 20), (day(40), 20)))
    assert result.hyperprogression == "no"
    assert result.sum_change == pytest.approx(0.375)


def test_hyperprogression_yes_when_the_rise_shows_at_the_progression_scan_not_the_first_scan():
    # day 30: 20 → 22 (+10 %, no progression yet); day 55: 35 mm = +75 % over the pre-ICI 20 mm, and the
    # progression (day 55) came < 60 days after start: both Hyperprogression conditions hold.
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(30), 22), (day(55), 35)))
    assert result.date == date.fromisoformat(day(55))
    assert result.hyperprogression == "yes"


def test_hyperprogression_not_assessable_without_pre_ici_measurement():
    result = assess(*lesion("l1", LIVER, (day(30), 20), (day(50), 40)))
    assert result.documented
    assert result.hyperprogression == "not-assessable"


def test_hyperprogression_not_assessable_without_lesion_data():
    result = assess(b.disease_status("271299001", day(30)))
    assert result.hyperprogression == "not-assessable"


def test_hyperprogression_never_no_without_post_ici_measurement():
    result = assess(*lesion("l1", LIVER, (PRE, 20)), b.disease_status("271299001", day(30)))
    assert result.hyperprogression == "not-assessable"


# -- unreadable data ------------------------------------------------------------------------------------
def test_tumour_size_without_focus_is_reported_not_used():
    obs = b.tumor_size("l1", 30, day(120))
    del obs["focus"]
    result = assess(obs)
    assert result.lesions == ()
    assert any(p.concept == "lesion" for p in result.problems)


# -- review regressions: never "no" hyperprogression without the data -------------------------------------


def test_hyperprogression_not_assessable_when_a_baseline_lesion_is_not_re_measured():
    # Two 50 mm baseline lesions; at day 40 only L1 is re-measured (80 mm). L2's size is unknown, so the burden
    # comparison cannot be made (counting it as 0 mm would give a false "no").
    result = assess(*lesion("l1", LIVER, (PRE, 50), (day(40), 80)), *lesion("l2", LIVER, (PRE, 50)))
    assert result.documented
    assert result.hyperprogression == "not-assessable"


def test_hyperprogression_not_assessable_when_the_progression_date_is_unknown():
    # Progression only from an undated stop for no response; lesions measured but none growing.
    meds = [b.med_statement("atezolizumab", START.isoformat(), status="stopped", status_reason="266721009")]
    result = assess(*lesion("l1", LIVER, (PRE, 20), (day(40), 21)), meds=meds)
    assert result.documented and result.date is None
    assert result.hyperprogression == "not-assessable"
