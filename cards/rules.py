"""Rules R0–R8 of Hwang et al., Liver Cancer 2023, in the paper's order (clinical-rules.md §3).

Each rule reads the Assessment and adds to the Recommendation. R1/R2 annotate; they never hide later options.
Thresholds marked [derived] are not stated as cut-offs in the paper; they are configurable and the card says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .assessment import Assessment
from .markers import AFP_RAMUCIRUMAB_THRESHOLD_NG_ML

ECOG_POOR = 2  # [derived] "ECOG ≥ 2 at disease progression" (Talbot et al., cited by the paper)
ALBI_POOR_GRADE = 3  # [derived] "ALBI grade ≥ 3 at disease progression"
LENVATINIB_WEIGHT_KG = 60.0
LENVATINIB_LOW_MG, LENVATINIB_HIGH_MG = 8, 12

STRENGTHS = ("preferred", "alternative", "consider", "caution", "avoid")
_GROUP = {"local-ablative-therapy": 0, "sbrt-vascular-invasion": 0, "tki-lenvatinib": 1, "tki-sorafenib": 2,
          "tki-cabozantinib": 3, "tki-regorafenib": 4, "ramucirumab": 5, "ici-retrial-nivolumab-ipilimumab": 6,
          "best-supportive-care": 7, "clinical-trial": 8}
LABELS = {
    "tki-lenvatinib": "Lenvatinib",
    "tki-sorafenib": "Sorafenib",
    "tki-cabozantinib": "Cabozantinib",
    "tki-regorafenib": "Regorafenib",
    "ramucirumab": "Ramucirumab",
    "ici-retrial-nivolumab-ipilimumab": "ICI retrial: nivolumab + ipilimumab",
    "local-ablative-therapy": "Local ablative therapy (SBRT favoured)",
    "sbrt-vascular-invasion": "SBRT to the new vascular invasion, with systemic therapy",
    "best-supportive-care": "Best supportive care",
    "clinical-trial": "Clinical trial",
}
# Doses are not from the paper: product labels and pivotal trials (clinical-codes.md §5).
DOSES = {
    "tki-sorafenib": "400 mg twice daily",
    "tki-cabozantinib": "60 mg once daily",
    "tki-regorafenib": "160 mg once daily, days 1–21 of each 28-day cycle",
    "ramucirumab": "8 mg/kg IV every 2 weeks",
    "ici-retrial-nivolumab-ipilimumab": ("nivolumab 1 mg/kg + ipilimumab 3 mg/kg IV every 3 weeks × 4, then "
                                         "nivolumab 240 mg every 2 weeks (CheckMate 040 arm A)"),
}


@dataclass
class Option:
    code: str
    strength: str
    rationale: str
    evidence: tuple[str, ...]  # keys of cards.evidence.QUOTES
    dose: str | None = None

    @property
    def label(self) -> str:
        return LABELS[self.code]


@dataclass
class Recommendation:
    applicable: bool
    rules_fired: list[str] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    indicator: str = "info"
    reason: str = ""  # why the leading option leads, for the summary
    applicability_unclear: bool = False
    not_evaluated: list[str] = field(default_factory=list)  # rule inputs that were not current (ECOG, ALBI)

    def add(self, option: Option) -> None:
        """Add an option; if present already, keep the stronger strength and both rationales."""
        for existing in self.options:
            if existing.code == option.code:
                if STRENGTHS.index(option.strength) < STRENGTHS.index(existing.strength):
                    existing.strength = option.strength
                if option.rationale not in existing.rationale:
                    existing.rationale = f"{existing.rationale} {option.rationale}"
                existing.evidence = tuple(dict.fromkeys(existing.evidence + option.evidence))
                return
        self.options.append(option)

    def fire(self, rule: str) -> None:
        if rule not in self.rules_fired:
            self.rules_fired.append(rule)

    def ranked(self) -> list[Option]:
        return sorted(self.options, key=lambda o: (STRENGTHS.index(o.strength), _GROUP[o.code]))


def lenvatinib_mg(weight_kg: float) -> int:
    """Daily lenvatinib dose: 8 mg < 60 kg, 12 mg ≥ 60 kg (REFLECT; clinical-codes.md §5)."""
    return LENVATINIB_HIGH_MG if weight_kg >= LENVATINIB_WEIGHT_KG else LENVATINIB_LOW_MG


def lenvatinib_dose(weight_kg: float | None) -> str:
    """The dose text for the options; says so when the weight is unknown."""
    if weight_kg is None:
        return (f"{LENVATINIB_LOW_MG} mg once daily if < 60 kg, {LENVATINIB_HIGH_MG} mg once daily if ≥ 60 kg "
                "(current weight unknown)")
    return f"{lenvatinib_mg(weight_kg)} mg once daily"


def applicable(a: Assessment) -> bool:
    """R0: HCC (or possible HCC) and a first-line ICI course that progressed or stopped for toxicity."""
    line, prog = a.first_line, a.progression
    return (a.diagnosis.status != "none" and line is not None and prog is not None
            and (prog.documented or line.stopped_for_toxicity))


def recommend(a: Assessment) -> Recommendation:
    if not applicable(a):
        unclear = (a.diagnosis.status != "none" and a.first_line is not None
                   and bool(a.skipped or a.unavailable or any(p.concept == "lesion" for p in a.problems)))
        return Recommendation(applicable=False, applicability_unclear=unclear)
    rec = Recommendation(applicable=True)
    rec.fire("R0")
    _r1_performance(a, rec)
    _r2_liver(a, rec)
    _r2b_hyperprogression(a, rec)
    constrained = _r3_r4_adverse_events(a, rec)
    _r5_oligoprogression(a, rec)
    _r6_vascular_invasion(a, rec)
    if not constrained:
        _r7_default(a, rec)
    _local_therapy_context(a, rec)
    _r8_individualise(a, rec)
    rec.options = rec.ranked()
    return rec


def _r1_performance(a: Assessment, rec: Recommendation) -> None:
    ecog = a.performance.current_value
    if ecog is None:
        rec.caveats.append("Performance status not current: R1 (ECOG ≥ 2) could not be evaluated; ECOG is "
                           "never assumed to be 0.")
        rec.not_evaluated.append("ECOG")
        rec.indicator = "warning"
        return
    if ecog >= ECOG_POOR:
        source = (f" (Karnofsky {a.performance.karnofsky} mapped to ECOG)" if a.performance.source == "karnofsky"
                  else "")
        rec.fire("R1")
        rec.indicator = "warning"
        rec.add(Option("best-supportive-care", "consider",
                       f"ECOG {ecog}{source} at progression [derived threshold ECOG ≥ 2]: poor performance status "
                       "carried HR 2.04 for OS; weigh risk and benefit of further treatment.", ("R1",)))
        rec.warnings.append(f"ECOG {ecog}{source}: weigh best supportive care against further treatment.")


def _r2_liver(a: Assessment, rec: Recommendation) -> None:
    grade = a.albi.current_grade
    if grade is None:
        rec.caveats.append("ALBI not current: R2 (ALBI grade 3) could not be evaluated.")
        rec.not_evaluated.append("ALBI")
        rec.indicator = "warning"
        return
    if grade >= ALBI_POOR_GRADE:
        rec.fire("R2")
        rec.indicator = "warning"
        rec.add(Option("best-supportive-care", "consider",
                       f"ALBI grade 3 ({a.albi.score:.2f}) at progression [derived threshold]: poor liver function "
                       "carried HR 1.51 for OS (univariate only, weaker evidence).", ("R2",)))
        rec.warnings.append(f"ALBI grade 3 ({a.albi.score:.2f}): weigh best supportive care; liver function "
                            "often deteriorates further after treatment failure.")


def _r2b_hyperprogression(a: Assessment, rec: Recommendation) -> None:
    prog = a.progression
    if prog and prog.hyperprogression == "yes":
        rec.fire("R2b")
        rec.indicator = "warning"
        change = f" (+{prog.sum_change * 100:.0f} % tumour burden)" if prog.sum_change is not None else ""
        rec.warnings.append(f"Hyperprogression{change} within 60 days of ICI start [derived criteria]: further "
                            "treatment is more difficult to choose.")


def _tki_options(a: Assessment, lenvatinib: str, sorafenib: str, others: str, why: str, keys: tuple[str, ...],
                 rec: Recommendation) -> None:
    rec.add(Option("tki-lenvatinib", lenvatinib, why, keys, lenvatinib_dose(a.weight.current_kg)))
    rec.add(Option("tki-sorafenib", sorafenib, why, keys, DOSES["tki-sorafenib"]))
    rec.add(Option("tki-cabozantinib", others, why + " Off-label sequencing after ICI (CELESTIAL was after "
                   "sorafenib).", keys, DOSES["tki-cabozantinib"]))
    rec.add(Option("tki-regorafenib", others, why + " Off-label sequencing after ICI (RESORCE required "
                   "tolerated sorafenib).", keys, DOSES["tki-regorafenib"]))
    afp = a.afp.current_value
    if afp is not None and afp >= AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:
        rec.add(Option("ramucirumab", others, why + f" AFP {afp:g} ng/mL ≥ 400 (REACH-2 criterion).",
                       (*keys, "R7-ramucirumab"), DOSES["ramucirumab"]))


def _r3_r4_adverse_events(a: Assessment, rec: Recommendation) -> bool:
    """R3 (prior irAE → TKI) and R4 (prior bevacizumab-type event → ICI retrial). True if either fired."""
    aes = a.adverse_events
    irae = aes.immune_related if aes else ()
    bev = aes.bevacizumab_related if aes else ()
    line = a.first_line
    assert line is not None
    if irae:
        rec.fire("R3")
    if bev:
        rec.fire("R4")
    irae_text = ", ".join(f"{f.label} ({f.code}{', severe' if f.severe else ''})" for f in irae)
    bev_text = ", ".join(f"{f.label} ({f.code})" for f in bev)
    if irae and bev:
        rec.indicator = "warning"
        rec.warnings.append(f"Both a prior immune-related event ({irae_text}) and a bevacizumab-type event "
                            f"({bev_text}): the paper gives no tie-break; no systemic option is preferred. "
                            "Discuss local therapy, supportive care and trials (tumour board).")
        why = f"Prior bevacizumab-type event ({bev_text}): bleeding risk with anti-VEGF TKIs."
        _tki_options(a, "caution", "caution", "caution", why, ("R4",), rec)
        rec.add(Option("ici-retrial-nivolumab-ipilimumab", "avoid",
                       f"Prior immune-related adverse event ({irae_text}).", ("R3",),
                       DOSES["ici-retrial-nivolumab-ipilimumab"]))
        rec.add(Option("best-supportive-care", "consider", "Conflicting constraints from R3 and R4.", ("R8",)))
        if a.progression and a.progression.pattern != "systemic":
            rec.add(Option("local-ablative-therapy", "consider", "Local therapy avoids both the ICI and the "
                           "anti-VEGF constraint where the progressing sites allow it.", ("R5",)))
        rec.reason = "prior irAE and bevacizumab-type event: no systemic option preferred"
        return True
    if irae:
        severe = any(f.severe for f in irae)
        why = (f"Prior immune-related adverse event on {line.regimen}: {irae_text}; a switch to TKI is "
               f"{'strongly ' if severe else ''}preferred.")
        _tki_options(a, "preferred", "preferred", "consider", why, ("R3", "R7-sequence"), rec)
        rec.add(Option("ici-retrial-nivolumab-ipilimumab", "avoid", f"Prior immune-related adverse event "
                       f"({irae_text}); irAEs are more frequent with combined ICIs.", ("R3", "ici-combination"),
                       DOSES["ici-retrial-nivolumab-ipilimumab"]))
        rec.reason = f"prior immune-related {irae[0].label} on {line.regimen}; avoid ICI retrial"
        return True
    if bev:
        grade = a.albi.current_grade
        if line.anti_ctla4:
            strength, liver = "consider", ("first line already contained anti-CTLA-4: the ipilimumab-retrial "
                                           "evidence (after anti-PD-(L)1 only) does not cover it.")
        elif grade == 1:
            strength, liver = "preferred", "ALBI grade 1: good liver function reserve [derived]."
        else:
            shown = f"ALBI grade {grade}" if grade else "no current ALBI"
            strength, liver = "consider", (f"{shown}: the paper restricts ICI retrial to good liver function "
                                           "reserve (ALBI grade 1 [derived]).")
        rec.add(Option("ici-retrial-nivolumab-ipilimumab", strength,
                       f"Prior bevacizumab-type event on {line.regimen} ({bev_text}): retrial of ICI-based therapy "
                       f"without TKI. {liver} About 12 % grade ≥ 3 treatment-related events.",
                       ("R4", "R4-liver", "ici-combination"), DOSES["ici-retrial-nivolumab-ipilimumab"]))
        why = f"Prior bevacizumab-type event ({bev_text}): bleeding risk with anti-VEGF TKIs."
        _tki_options(a, "caution", "caution", "caution", why, ("R4",), rec)
        rec.reason = (f"{bev[0].label} on {line.regimen}" + (", ALBI grade 1" if strength == "preferred" else "")
                      + "; TKIs with caution")
        return True
    return False


def _r5_oligoprogression(a: Assessment, rec: Recommendation) -> None:
    prog = a.progression
    if prog and prog.pattern == "oligoprogression":
        rec.fire("R5")
        organs = ", ".join(prog.organs)
        rec.add(Option("local-ablative-therapy", "preferred",
                       f"Oligoprogression: {prog.progressing_lesions} progressing lesion(s) in {organs}, "
                       "progression ≥ 90 days after ICI start [derived: 1–5 lesions, ≤ 3 organs, the paper's '3–5' "
                       "read as 'up to 5'; ≥ 90 days stands in for ≥ 3 months of disease control]. SBRT favoured "
                       "(little or no interruption of ICI, possible immune stimulation); continue the current ICI or "
                       "switch to TKI/other ICI.", ("R5", "R5-definition")))
        if not rec.reason:
            rec.reason = f"oligoprogression ({prog.progressing_lesions} lesion(s), {organs})"


def _r6_vascular_invasion(a: Assessment, rec: Recommendation) -> None:
    prog = a.progression
    if prog and prog.new_vascular_invasion:
        rec.fire("R6")
        rec.indicator = "warning"
        rec.add(Option("sbrt-vascular-invasion", "preferred",
                       "New vascular invasion after ICI start: SBRT (or other LRT) to the tumour thrombus combined "
                       "with systemic therapy. Portal vein thrombosis is coded (ICD-10-CM I81 does not distinguish "
                       "tumour from bland thrombus): confirm tumour thrombus on imaging.", ("R6",)))
        rec.warnings.append("New vascular invasion carried HR 2.15 for OS after ICI failure; confirm on imaging "
                            "that the coded portal vein thrombosis is tumour thrombus.")
        rec.reason = rec.reason or "new vascular invasion after ICI (HR 2.15 for OS)"


def _r7_default(a: Assessment, rec: Recommendation) -> None:
    rec.fire("R7")
    line, prog = a.first_line, a.progression
    assert line is not None and prog is not None
    why = "Switching to TKI (especially lenvatinib) has the most supporting evidence after ICI failure."
    rec.add(Option("tki-lenvatinib", "preferred", why + " Trade-off: after lenvatinib there is no further line "
                   "with strong evidence.", ("R7", "R7-sequence"), lenvatinib_dose(a.weight.current_kg)))
    rec.add(Option("tki-sorafenib", "alternative", "Keeps RCT-backed third-line options (regorafenib, "
                   "cabozantinib, ramucirumab if AFP ≥ 400 ng/mL); lower PFS/ORR than lenvatinib.",
                   ("R7-sequence",), DOSES["tki-sorafenib"]))
    rec.add(Option("tki-cabozantinib", "consider", "Off-label sequencing after ICI (CELESTIAL was after sorafenib).",
                   ("R7-ramucirumab",), DOSES["tki-cabozantinib"]))
    rec.add(Option("tki-regorafenib", "consider", "Off-label sequencing after ICI (RESORCE required tolerated "
                   "sorafenib).", ("R7-ramucirumab",), DOSES["tki-regorafenib"]))
    afp = a.afp.current_value
    if afp is not None and afp >= AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:
        rec.add(Option("ramucirumab", "consider", f"AFP {afp:g} ng/mL ≥ 400 (REACH-2 criterion).",
                       ("R7-ramucirumab",), DOSES["ramucirumab"]))
    elif a.afp.status != "current":
        rec.caveats.append("No current AFP in ng/mL: ramucirumab (AFP ≥ 400 ng/mL only) not evaluated.")
    rec.reason = rec.reason or (f"progression on {line.regimen}; TKI switch has most evidence"
                                if prog.documented else f"{line.regimen} stopped for toxicity")


def _local_therapy_context(a: Assessment, rec: Recommendation) -> None:
    """Whatever the systemic branch (R3, R4 or R7): no LRT for disseminated progression; LAT worth checking when
    the pattern is indeterminate ("LRT may not be suitable in cases with disseminated tumor progression")."""
    prog = a.progression
    assert prog is not None
    if prog.pattern == "systemic":
        rec.caveats.append("Disseminated (systemic) progression: local therapy is not offered.")
        rec.options = [o for o in rec.options if o.code != "local-ablative-therapy"]
    elif prog.pattern == "indeterminate":
        rec.add(Option("local-ablative-therapy", "consider", f"Pattern indeterminate ({prog.reason}); if imaging "
                       "shows oligoprogression, local ablative therapy becomes preferred.", ("R5", "R7-systemic")))


def _r8_individualise(a: Assessment, rec: Recommendation) -> None:
    rec.fire("R8")
    rec.add(Option("clinical-trial", "consider", "Ongoing second-line trials after ICI (the paper's Table 1); "
                   "no results are claimed. Decisions also depend on patient preference, liver function and cost.",
                   ("R8", "R8-trials")))
