"""cards.rules: R0–R8 (clinical-rules.md §3).

Most tests build the Assessment directly (the rules read only the Assessment); the R0 tests and a few
boundary checks run whole FHIR records through cards.patient_view.evaluate.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cards.adverse_events import AdverseEventFinding, AdverseEvents
from cards.albi import AlbiResult
from cards.assessment import Assessment, Diagnosis
from cards.markers import AfpResult, WeightResult
from cards.medications import FirstLine
from cards.patient_view import evaluate
from cards.performance import PerformanceStatus
from cards.progression import Progression
from cards.rules import applicable, lenvatinib_dose, recommend
from tests.cards import builders as b

STRENGTH_ORDER = ["preferred", "alternative", "consider", "caution", "avoid"]
SYSTEMIC = {"tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib", "tki-regorafenib", "ramucirumab",
            "ici-retrial-nivolumab-ipilimumab"}
SCORE_OF_GRADE = {1: -2.9026, 2: -2.1090, 3: -1.2513}  # worked examples A, C, D (clinical-codes.md §1)
MALBI_OF_GRADE = {1: "1", 2: "2b", 3: "3"}
TODAY = b.TODAY
RECENT = TODAY - timedelta(days=5)
ICI_START = date(2025, 10, 1)
ICI_END = date(2026, 3, 1)


# -- Assessment builders -------------------------------------------------------------------------------
def first_line(regimen="atezolizumab-bevacizumab", drugs=("atezolizumab", "bevacizumab"), stop="progression",
               anti_ctla4=False):
    return FirstLine(
        regimen=regimen, drugs=tuple(drugs), start=ICI_START, end=ICI_END, active=False, stop_reason=stop,
        progression_stop_date=ICI_END if stop == "progression" else None,
        stopped_for_progression=stop == "progression", stopped_for_toxicity=stop == "toxicity",
        ici_end=ICI_END, bevacizumab_start=ICI_START if "bevacizumab" in drugs else None,
        bevacizumab_end=ICI_END if "bevacizumab" in drugs else None, anti_ctla4=anti_ctla4,
        sources=("MedicationStatement/x",),
    )


def progression(pattern="systemic", documented=True, nvi=False, hyper="not-assessable", lesions=None,
                organs=("lung", "bone")):
    return Progression(documented=documented, date=ICI_END if documented else None, pattern=pattern,
                       new_vascular_invasion=nvi, progressing_lesions=lesions, organs=tuple(organs),
                       hyperprogression=hyper, evidence=("test evidence",) if documented else (),
                       sum_change=0.8 if hyper == "yes" else None)


def irae(code="K75.4", label="hepatitis", severe=False):
    return AdverseEventFinding(code, label, date(2025, 12, 1), severe, "Condition/irae")


def bev_event(code="K92.2", label="gastrointestinal bleeding"):
    return AdverseEventFinding(code, label, date(2025, 12, 1), False, "Condition/bleed")


def assessment(*, diagnosis="hcc", line="default", prog="default", albi_grade=2, albi_status="current",
               ecog=1, ecog_status="current", ecog_source="ecog", karnofsky=None, afp=120.0, afp_status="current",
               weight=72.0, weight_status="current", iraes=(), bevs=()):
    line = first_line() if line == "default" else line
    prog = progression() if prog == "default" else prog
    if albi_grade is None:
        albi = AlbiResult(status=albi_status)
    else:
        albi = AlbiResult(status=albi_status, score=SCORE_OF_GRADE[albi_grade], grade=albi_grade,
                          malbi=MALBI_OF_GRADE[albi_grade], bilirubin_umol_per_l=20.52, albumin_g_per_l=35.0,
                          date=RECENT)
    perf = (PerformanceStatus("missing") if ecog is None else
            PerformanceStatus(ecog_status, ecog, ecog_source, karnofsky, RECENT))
    afp_result = AfpResult("missing") if afp is None else AfpResult(afp_status, afp, RECENT)
    weight_result = WeightResult("missing") if weight is None else WeightResult(weight_status, weight, RECENT)
    code = {"hcc": "C22.0", "possible-hcc": "C22.9", "none": None}[diagnosis]
    return Assessment(
        now=b.NOW, current_days=30,
        diagnosis=Diagnosis(diagnosis, code, b.ICD10CM if code else None),
        first_line=line, albi=albi, performance=perf, afp=afp_result, weight=weight_result,
        progression=prog, adverse_events=AdverseEvents(tuple(iraes), tuple(bevs)) if line else None,
        skipped=(), unavailable=(),
    )


def strengths(rec):
    return {o.code: o.strength for o in rec.options}


def option(rec, code):
    return next(o for o in rec.options if o.code == code)


# -- R0 applicability (whole records through the patient-view pipeline) ----------------------------------
def _record(hcc_code="C22.0", meds=None, extra=()):
    meds = meds if meds is not None else [
        b.med_statement("atezolizumab", "2025-10-01", "2026-03-01", status_reason="266721009"),
        b.med_statement("bevacizumab", "2025-10-01", "2026-03-01", status_reason="266721009")]
    base = [b.patient(), b.condition(hcc_code, "2025-09-01"), *meds,
            b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)), b.ecog(1, b.ago(5)),
            b.afp(120, "ng/mL", b.ago(5)), b.weight(72, "kg", b.ago(5))]
    return [*base, *extra]


def _evaluate(resources):
    return evaluate(resources, b.NOW, b.PATIENT_ID)


def test_r0_not_hcc_cholangiocarcinoma_gives_no_cards():
    result = _evaluate(_record(hcc_code="C22.1"))
    assert result.cards == []
    assert not result.recommendation.applicable


def test_r0_no_ici_gives_no_cards():
    meds = [b.med_statement("sorafenib", "2025-10-01", "2026-03-01", status_reason="266721009")]
    assert _evaluate(_record(meds=meds)).cards == []


def test_r0_no_progression_gives_no_cards():
    meds = [b.med_statement("atezolizumab", "2025-10-01", status="active"),
            b.med_statement("bevacizumab", "2025-10-01", status="active")]
    result = _evaluate(_record(meds=meds))
    assert result.cards == []
    assert "R0" not in result.recommendation.rules_fired


def test_r0_hcc_progression_gives_cards():
    result = _evaluate(_record())
    assert result.recommendation.applicable
    assert result.recommendation.rules_fired[0] == "R0"
    assert result.cards


def test_r0_hcc_by_snomed_109841003():
    assert _evaluate(_record(hcc_code="109841003")).recommendation.applicable


def test_r0_hcc_code_without_dot():
    assert _evaluate(_record(hcc_code="C220")).recommendation.applicable


@pytest.mark.parametrize("code", ["C22.9", "C22.8", "93870000"])
def test_r0_possible_hcc_is_applicable_and_the_card_says_so(code):
    result = _evaluate(_record(hcc_code=code))
    assert result.recommendation.applicable
    assert result.assessment.diagnosis.status == "possible-hcc"
    card = result.cards[0]
    assert "possible hcc" in (card["summary"] + card["detail"]).lower()


def test_r0_refuted_hcc_is_not_hcc():
    resources = _record()
    resources[1] = b.condition("C22.0", "2025-09-01", verification="refuted")
    assert _evaluate(resources).cards == []


def test_r0_hcc_beats_possible_hcc():
    resources = _record(hcc_code="C22.9", extra=[b.condition("C22.0", "2025-09-02")])
    result = _evaluate(resources)
    assert result.assessment.diagnosis.status == "hcc"
    assert "possible hcc" not in result.cards[0]["summary"].lower()


def test_r0_unusable_progression_data_gives_only_the_data_quality_card():
    """R0: "no cards, except the data-quality card when HCC and ICI exist but the data to decide
    applicability are unusable" — here a tumour-size Observation without its lesion."""
    meds = [b.med_statement("atezolizumab", "2025-10-01", status="active")]
    size = b.tumor_size("l1", 40, "2026-02-01")
    del size["focus"]
    result = _evaluate(_record(meds=meds, extra=[size]))
    assert not result.recommendation.applicable
    assert [c["source"]["topic"]["code"] for c in result.cards] == ["data-quality"]


def test_r0_toxicity_stop_applies():
    meds = [b.med_statement("atezolizumab", "2025-10-01", "2026-01-10", status_reason="407563006"),
            b.med_statement("bevacizumab", "2025-10-01", "2026-01-10", status_reason="407563006")]
    result = _evaluate(_record(meds=meds))
    assert result.recommendation.applicable
    assert "R0" in result.recommendation.rules_fired
    assert not result.assessment.progression.documented


def test_r0_direct_not_applicable_without_first_line_or_progression():
    assert not applicable(assessment(diagnosis="none"))
    assert not applicable(assessment(line=None, prog=None))
    none = progression("not-documented", documented=False)
    assert not applicable(assessment(line=first_line(stop=None), prog=none))
    assert applicable(assessment(line=first_line(stop="toxicity"), prog=none))


def test_not_applicable_recommendation_has_no_options():
    rec = recommend(assessment(diagnosis="none"))
    assert not rec.applicable
    assert rec.options == [] and rec.rules_fired == []


# -- R1 performance status --------------------------------------------------------------------------
def test_r1_fires_at_ecog_2():
    rec = recommend(assessment(ecog=2))
    assert "R1" in rec.rules_fired
    assert strengths(rec)["best-supportive-care"] == "consider"
    assert rec.indicator == "warning"


def test_r1_does_not_fire_at_ecog_1():
    rec = recommend(assessment(ecog=1))
    assert "R1" not in rec.rules_fired
    assert "best-supportive-care" not in strengths(rec)


def test_r1_annotates_and_never_hides_later_options():
    rec = recommend(assessment(ecog=3))
    assert strengths(rec)["tki-lenvatinib"] == "preferred"
    assert "R7" in rec.rules_fired and "R8" in rec.rules_fired


def test_r1_fires_from_karnofsky_60():
    rec = recommend(assessment(ecog=2, ecog_source="karnofsky", karnofsky=60))
    assert "R1" in rec.rules_fired
    assert "Karnofsky 60" in option(rec, "best-supportive-care").rationale


def test_r1_not_fired_on_stale_ecog_and_never_assumed():
    rec = recommend(assessment(ecog=3, ecog_status="stale"))
    assert "R1" not in rec.rules_fired
    assert any("ECOG" in c for c in rec.caveats)


def test_r1_missing_ecog_is_said_not_assumed():
    rec = recommend(assessment(ecog=None))
    assert "R1" not in rec.rules_fired
    assert any("never assumed" in c for c in rec.caveats)


# -- R2 liver function -------------------------------------------------------------------------------
def test_r2_fires_at_albi_grade_3():
    rec = recommend(assessment(albi_grade=3))
    assert "R2" in rec.rules_fired
    assert strengths(rec)["best-supportive-care"] == "consider"
    assert rec.indicator == "warning"


def test_r2_does_not_fire_at_albi_grade_2():
    rec = recommend(assessment(albi_grade=2))
    assert "R2" not in rec.rules_fired
    assert "best-supportive-care" not in strengths(rec)


def test_r2_not_fired_on_stale_albi():
    rec = recommend(assessment(albi_grade=3, albi_status="stale"))
    assert "R2" not in rec.rules_fired


# -- R2b hyperprogression ---------------------------------------------------------------------------
def test_r2b_fires_on_hyperprogression_yes():
    rec = recommend(assessment(prog=progression(hyper="yes")))
    assert "R2b" in rec.rules_fired
    assert any("more difficult to choose" in w for w in rec.warnings)
    assert rec.indicator == "warning"


@pytest.mark.parametrize("hyper", ["no", "not-assessable"])
def test_r2b_not_fired_otherwise(hyper):
    assert "R2b" not in recommend(assessment(prog=progression(hyper=hyper))).rules_fired


# -- R3 prior irAE --------------------------------------------------------------------------------------
def test_r3_prefers_lenvatinib_and_sorafenib_and_avoids_ici_retrial():
    rec = recommend(assessment(iraes=[irae()]))
    s = strengths(rec)
    assert "R3" in rec.rules_fired
    assert s["tki-lenvatinib"] == "preferred"
    assert s["tki-sorafenib"] == "preferred"
    assert s["ici-retrial-nivolumab-ipilimumab"] == "avoid"
    assert "R7" not in rec.rules_fired


def test_r3_lenvatinib_first():
    rec = recommend(assessment(iraes=[irae()]))
    first_systemic = next(o for o in rec.options if o.code in SYSTEMIC)
    assert first_systemic.code == "tki-lenvatinib"


# -- R4 prior bevacizumab-type event ----------------------------------------------------------------
def test_r4_with_albi_1_prefers_ici_retrial_and_tkis_drop_to_caution():
    rec = recommend(assessment(albi_grade=1, bevs=[bev_event()]))
    s = strengths(rec)
    assert "R4" in rec.rules_fired
    assert s["ici-retrial-nivolumab-ipilimumab"] == "preferred"
    for tki in ("tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib", "tki-regorafenib"):
        assert s[tki] == "caution", tki
    assert "R7" not in rec.rules_fired


def test_r4_with_albi_2_only_considers_ici_retrial():
    rec = recommend(assessment(albi_grade=2, bevs=[bev_event()]))
    assert strengths(rec)["ici-retrial-nivolumab-ipilimumab"] == "consider"
    assert "ALBI grade 2" in option(rec, "ici-retrial-nivolumab-ipilimumab").rationale


def test_r4_without_current_albi_does_not_prefer_ici_retrial():
    rec = recommend(assessment(albi_grade=None, albi_status="missing", bevs=[bev_event()]))
    assert strengths(rec)["ici-retrial-nivolumab-ipilimumab"] == "consider"


def test_r4_with_stale_albi_1_does_not_prefer_ici_retrial():
    rec = recommend(assessment(albi_grade=1, albi_status="stale", bevs=[bev_event()]))
    assert strengths(rec)["ici-retrial-nivolumab-ipilimumab"] == "consider"


def test_r4_after_anti_ctla4_first_line_is_never_preferred():
    line = first_line(regimen="other-ici", drugs=("bevacizumab", "ipilimumab", "nivolumab"), anti_ctla4=True)
    rec = recommend(assessment(line=line, albi_grade=1, bevs=[bev_event()]))
    assert strengths(rec)["ici-retrial-nivolumab-ipilimumab"] != "preferred"
    assert "anti-CTLA-4" in option(rec, "ici-retrial-nivolumab-ipilimumab").rationale


def test_r3_and_r4_together_prefer_no_systemic_option():
    rec = recommend(assessment(albi_grade=1, iraes=[irae()], bevs=[bev_event()]))
    assert {"R3", "R4"} <= set(rec.rules_fired)
    preferred = {o.code for o in rec.options if o.strength == "preferred"}
    assert not preferred & SYSTEMIC
    assert strengths(rec)["ici-retrial-nivolumab-ipilimumab"] == "avoid"
    assert "best-supportive-care" in strengths(rec)
    assert "clinical-trial" in strengths(rec)


# -- R5 oligoprogression ------------------------------------------------------------------------------
def test_r5_local_ablative_therapy_first():
    rec = recommend(assessment(prog=progression("oligoprogression", lesions=2, organs=("liver",))))
    assert "R5" in rec.rules_fired
    assert rec.options[0].code == "local-ablative-therapy"
    assert rec.options[0].strength == "preferred"
    assert "SBRT" in rec.options[0].rationale


@pytest.mark.parametrize("pattern", ["systemic", "new-vascular-invasion", "indeterminate"])
def test_r5_only_for_oligoprogression(pattern):
    rec = recommend(assessment(prog=progression(pattern, nvi=pattern == "new-vascular-invasion")))
    assert "R5" not in rec.rules_fired
    assert strengths(rec).get("local-ablative-therapy") != "preferred"


# -- R6 new vascular invasion ----------------------------------------------------------------------------
def test_r6_sbrt_for_vascular_invasion_preferred_with_warning():
    rec = recommend(assessment(prog=progression("new-vascular-invasion", nvi=True, organs=())))
    assert "R6" in rec.rules_fired
    assert strengths(rec)["sbrt-vascular-invasion"] == "preferred"
    assert any("2.15" in w for w in rec.warnings)
    assert rec.indicator == "warning"


def test_r6_fires_alongside_systemic_pattern():
    rec = recommend(assessment(prog=progression("systemic", nvi=True)))
    assert "R6" in rec.rules_fired
    assert strengths(rec)["sbrt-vascular-invasion"] == "preferred"


def test_r6_not_fired_without_new_vascular_invasion():
    rec = recommend(assessment())
    assert "R6" not in rec.rules_fired
    assert "sbrt-vascular-invasion" not in strengths(rec)


# -- R7 default systemic choice ------------------------------------------------------------------------
def test_r7_default_options():
    rec = recommend(assessment())
    s = strengths(rec)
    assert "R7" in rec.rules_fired
    assert s["tki-lenvatinib"] == "preferred"
    assert s["tki-sorafenib"] == "alternative"
    assert s["tki-cabozantinib"] == "consider"
    assert s["tki-regorafenib"] == "consider"
    assert option(rec, "tki-sorafenib").dose == "400 mg twice daily"
    assert "no further" in option(rec, "tki-lenvatinib").rationale.lower()  # the trade-off is named


def test_r7_lenvatinib_8_mg_at_59_9_kg():
    assert option(recommend(assessment(weight=59.9)), "tki-lenvatinib").dose.startswith("8 mg")


def test_r7_lenvatinib_12_mg_at_60_0_kg():
    assert option(recommend(assessment(weight=60.0)), "tki-lenvatinib").dose.startswith("12 mg")


def test_r7_lenvatinib_dose_function_pair():
    assert lenvatinib_dose(59.99).startswith("8 mg")
    assert lenvatinib_dose(60.0).startswith("12 mg")


@pytest.mark.parametrize(("weight", "status"), [(None, "missing"), (80.0, "stale")])
def test_r7_lenvatinib_weight_unknown_text(weight, status):
    dose = option(recommend(assessment(weight=weight, weight_status=status)), "tki-lenvatinib").dose
    assert "weight unknown" in dose
    assert "8 mg" in dose and "12 mg" in dose


def test_r7_lenvatinib_8_mg_for_59_99_kg_observation_end_to_end():
    result = _evaluate(_record(extra=[b.weight(59.99, "kg", b.ago(1))]))
    assert option(result.recommendation, "tki-lenvatinib").dose.startswith("8 mg")


def test_r7_lenvatinib_12_mg_for_154_lb_end_to_end():
    # 154 lb = 69.85 kg ≥ 60
    result = _evaluate(_record(extra=[b.weight(154, "[lb_av]", b.ago(1))]))
    assert option(result.recommendation, "tki-lenvatinib").dose.startswith("12 mg")


def test_ramucirumab_not_offered_at_afp_399():
    assert "ramucirumab" not in strengths(recommend(assessment(afp=399.0)))


def test_ramucirumab_considered_at_afp_400():
    assert strengths(recommend(assessment(afp=400.0)))["ramucirumab"] == "consider"


def test_ramucirumab_not_offered_on_stale_afp():
    assert "ramucirumab" not in strengths(recommend(assessment(afp=800.0, afp_status="stale")))


def test_ramucirumab_not_offered_on_afp_in_iu():
    a = assessment()
    a = replace(a, afp=AfpResult("not-evaluated", None, RECENT))
    assert "ramucirumab" not in strengths(recommend(a))


def test_systemic_progression_gets_no_local_ablative_therapy():
    rec = recommend(assessment(prog=progression("systemic")))
    assert "local-ablative-therapy" not in strengths(rec)


def test_systemic_progression_with_r3_gets_no_local_ablative_therapy():
    rec = recommend(assessment(prog=progression("systemic"), iraes=[irae()]))
    assert "local-ablative-therapy" not in strengths(rec)


def test_systemic_progression_with_r3_and_r4_gets_no_local_ablative_therapy():
    rec = recommend(assessment(prog=progression("systemic"), iraes=[irae()], bevs=[bev_event()]))
    assert "local-ablative-therapy" not in strengths(rec)


# -- R8 and ordering ------------------------------------------------------------------------------------
SCENARIOS = {
    "default": {},
    "r1-r2": {"ecog": 3, "albi_grade": 3},
    "r3": {"iraes": [irae()]},
    "r4": {"albi_grade": 1, "bevs": [bev_event()]},
    "r3-r4": {"iraes": [irae()], "bevs": [bev_event()]},
    "oligo": {"prog": progression("oligoprogression", lesions=2, organs=("liver",))},
    "nvi": {"prog": progression("new-vascular-invasion", nvi=True, organs=())},
    "toxicity": {"line": first_line(stop="toxicity"), "prog": progression("not-documented", documented=False)},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_r8_always_with_clinical_trial(name):
    rec = recommend(assessment(**SCENARIOS[name]))
    assert rec.rules_fired[-1] == "R8"
    assert strengths(rec)["clinical-trial"] == "consider"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_options_ordered_by_strength(name):
    rec = recommend(assessment(**SCENARIOS[name]))
    ranks = [STRENGTH_ORDER.index(o.strength) for o in rec.options]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rules_fired_in_the_papers_order(name):
    order = ["R0", "R1", "R2", "R2b", "R3", "R4", "R5", "R6", "R7", "R8"]
    fired = recommend(assessment(**SCENARIOS[name])).rules_fired
    assert fired == sorted(fired, key=order.index)
    assert len(fired) == len(set(fired))
