"""Rules R0–R8 of Hwang et al., Liver Cancer 2023, as reconstructed in clinical-rules.md v2 §0 and §3.

One rule set, read by patient-view (``render``), order entry (``order_checks``) and the pathway app alike:
``decide(assessment)`` returns a ``Decision`` — scope, options with strengths, reasons and evidence keys,
excluded options, warnings, caveats — and never builds card syntax. Options are assembled by R3–R8, then the
failed drugs are removed, then the R0t, possible-HCC and R1/R2 caps apply. Every [derived] value is read from
the site policy in the assessment's context, and every sentence that states one reads the same value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .assessment import Assessment
from .markers import AFP_RAMUCIRUMAB_THRESHOLD_NG_ML
from .measurements import plural
from .policy import Policy


class Strength(StrEnum):
    """Strongest first (service-contract.md §3)."""

    PREFERRED = "preferred"
    ALTERNATIVE = "alternative"
    CONSIDER = "consider"
    CAUTION = "caution"
    AVOID = "avoid"

    @property
    def rank(self) -> int:
        return list(Strength).index(self)


# Option codes in the contract's order (ties in ranking keep this order) and their roles.
ROLES = {
    "best-supportive-care": "supportive",
    "surveillance": "surveillance",
    "tki-lenvatinib": "systemic",
    "tki-sorafenib": "systemic",
    "tki-cabozantinib": "systemic",
    "tki-regorafenib": "systemic",
    "ramucirumab": "systemic",
    "ici-retrial-nivolumab-ipilimumab": "systemic",
    "ici-continuation": "systemic",
    "local-ablative-therapy": "local",
    "sbrt-vascular-invasion": "local",
    "clinical-trial": "trial",
}
LABELS = {
    "best-supportive-care": "Best supportive care",
    "surveillance": "Surveillance imaging, no systemic therapy for now",
    "tki-lenvatinib": "Lenvatinib",
    "tki-sorafenib": "Sorafenib",
    "tki-cabozantinib": "Cabozantinib",
    "tki-regorafenib": "Regorafenib",
    "ramucirumab": "Ramucirumab",
    "ici-retrial-nivolumab-ipilimumab": "ICI retrial: nivolumab + ipilimumab",
    "ici-continuation": "Continue the first-line ICI",
    "local-ablative-therapy": "Local ablative therapy to the progressing lesions (SBRT favoured)",
    "sbrt-vascular-invasion": "SBRT to the new vascular invasion, added to systemic therapy",
    "clinical-trial": "Clinical trial",
}
# The drugs each option gives: an option whose drug failed in line 1 is not offered (two exceptions below).
OPTION_DRUGS = {
    "tki-lenvatinib": ("lenvatinib",), "tki-sorafenib": ("sorafenib",), "tki-cabozantinib": ("cabozantinib",),
    "tki-regorafenib": ("regorafenib",), "ramucirumab": ("ramucirumab",),
}
TKI_OPTIONS = ("tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib", "tki-regorafenib")
ANTI_VEGF_OPTIONS = (*TKI_OPTIONS, "ramucirumab")
_ANTI_CTLA4 = frozenset({"ipilimumab", "tremelimumab"})


@dataclass(frozen=True)
class Dose:
    """A dose as the rules chose it; ``render`` formats it. ``mg`` is set for weight-based lenvatinib."""

    text: str
    mg: int | None = None


@dataclass
class Option:
    code: str
    strength: Strength
    reason: str  # one line, ≤ 20 words, for the card
    rationale: str  # the full reasoning, for the extension and the app
    evidence: tuple[str, ...]  # keys of cards.evidence.QUOTES; the first is the one the card shows
    dose: Dose | None = None

    @property
    def label(self) -> str:
        return LABELS[self.code]

    @property
    def role(self) -> str:
        return ROLES[self.code]


@dataclass(frozen=True)
class WarningNote:
    text: str
    quote: str | None = None  # the evidence key of the sentence the warning rests on


@dataclass
class Decision:
    """Everything both hooks and the app need; no card syntax."""

    applicable: bool
    applicability: str | None = None  # progression | toxicity-stop
    unclear: tuple[str, ...] = ()  # why applicability could not be decided (data-quality card alone)
    rules_fired: list[str] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (option code, reason)
    warnings: list[WarningNote] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    indicator: str = "info"
    headline: str = ""  # why the leading option leads, for the summary
    needs: list[str] = field(default_factory=list)  # what to measure before an option can be preferred

    @property
    def applicability_unclear(self) -> bool:
        return bool(self.unclear)

    def option(self, code: str) -> Option | None:
        return next((o for o in self.options if o.code == code), None)

    def fire(self, rule: str) -> None:
        if rule not in self.rules_fired:
            self.rules_fired.append(rule)

    def set(self, code: str, strength: Strength, reason: str, rationale: str, evidence: tuple[str, ...],
            dose: Dose | None = None) -> None:
        """Put an option at exactly ``strength`` (a rule that names the option decides its strength)."""
        existing = self.option(code)
        if existing is None:
            self.options.append(Option(code, strength, reason, rationale, evidence, dose))
            return
        existing.strength, existing.reason = strength, reason
        if rationale not in existing.rationale:
            existing.rationale = f"{rationale} {existing.rationale}"
        existing.evidence = tuple(dict.fromkeys(evidence + existing.evidence))
        existing.dose = dose or existing.dose

    def at_least(self, code: str, strength: Strength, reason: str, rationale: str,
                 evidence: tuple[str, ...]) -> None:
        """Raise an option to ``strength`` (adding it if absent); a stronger strength is kept."""
        existing = self.option(code)
        if existing is None or strength.rank < existing.strength.rank:
            self.set(code, strength, reason, rationale, evidence)

    def cap(self, codes: object, ceiling: Strength, why: str) -> None:
        """No option of ``codes`` (an iterable, or a predicate on Option) above ``ceiling``."""
        for option in self.options:
            chosen = codes(option) if callable(codes) else option.code in codes  # type: ignore[operator]
            if chosen and option.strength.rank < ceiling.rank:
                option.strength = ceiling
                if why and why not in option.rationale:
                    option.rationale = f"{option.rationale} {why}"

    def ranked(self) -> list[Option]:
        order = list(ROLES)
        return sorted(self.options, key=lambda o: (o.strength.rank, order.index(o.code)))

    @property
    def lead(self) -> Option | None:
        return self.options[0] if self.options else None


# -- scope (R0) --------------------------------------------------------------------------------------
def scope(a: Assessment) -> tuple[str | None, tuple[str, ...]]:
    """(applicability, why undecidable) per clinical-rules.md §0; (None, ()) means out of scope, no cards."""
    if a.patient.deceased:
        return None, ()
    unreadable = tuple(a.skipped) + tuple(a.unavailable)
    unidentified = len(a.unidentified)
    if a.diagnosis.status == "none":
        if a.diagnosis.text_only:
            return None, ("HCC is named only in the text of a diagnosis, without a code: code the diagnosis so "
                          "the second-line rules can run",)
        return None, ()
    line = a.first_line
    if line is None:
        if unidentified and not a.history:
            return None, (f"{plural(unidentified, 'medication record')} could not be identified: first-line "
                          "immunotherapy cannot be confirmed",)
        return None, ()
    if len(a.history) > 1:
        return None, ()
    progression = a.progression
    if progression is not None and progression.documented:
        return "progression", ()
    if line.stopped_for_toxicity:
        return "toxicity-stop", ()
    lesions_unreadable = progression is not None and any(p.concept == "lesion" for p in progression.problems)
    if unreadable or unidentified or lesions_unreadable:
        return None, ("HCC and first-line immunotherapy are recorded, but whether it progressed could not be "
                      "decided from the data named below",)
    return None, ()


# -- doses -------------------------------------------------------------------------------------------
def lenvatinib_mg(weight_kg: float, policy: Policy) -> int:
    """8 mg < 60 kg, 12 mg ≥ 60 kg (REFLECT; clinical-codes.md §5)."""
    return policy.lenvatinib_high_mg if weight_kg >= policy.lenvatinib_weight_kg else policy.lenvatinib_low_mg


def lenvatinib_dose(a: Assessment) -> Dose:
    """Weight-based lenvatinib; the label's lower dose at Child-Pugh C; says so when the weight is unknown."""
    p = a.policy
    if a.child_pugh.grade == "C":
        return Dose(f"{p.lenvatinib_child_pugh_c_mg} mg once daily at most (Child-Pugh C: not studied; check the "
                    "label)", p.lenvatinib_child_pugh_c_mg)
    weight = a.weight.current_kg
    if weight is None:
        return Dose(f"{p.lenvatinib_low_mg} mg once daily if < {p.lenvatinib_weight_kg:g} kg, "
                    f"{p.lenvatinib_high_mg} mg if ≥ {p.lenvatinib_weight_kg:g} kg (weight unknown)")
    mg = lenvatinib_mg(weight, p)
    return Dose(f"{mg} mg once daily", mg)


def _fixed(a: Assessment, name: str) -> Dose:
    return Dose(a.policy.dose(name))


# -- the decision --------------------------------------------------------------------------------------
def decide(a: Assessment) -> Decision:
    """Apply R0–R8 to one assessment (clinical-rules.md §3)."""
    applicability, unclear = scope(a)
    if applicability is None:
        return Decision(applicable=False, unclear=unclear)
    d = Decision(applicable=True, applicability=applicability)
    d.fire("R0")
    _r7_default(a, d)
    _r3_r4_adverse_events(a, d)
    _r5_oligoprogression(a, d)
    _r6_vascular_invasion(a, d)
    _r2b_hyperprogression(a, d)
    _r8_individualise(a, d)
    _remove_failed_drugs(a, d)
    if applicability == "toxicity-stop":
        _r0t_surveillance(a, d)
    _r1_r2_fitness(a, d)
    _possible_hcc_and_age(a, d)
    _hepatic_caveats(a, d)
    d.options = d.ranked()
    if a.fitness != "fit" or a.diagnosis.status == "possible-hcc" or (a.patient.age_years or 99) < 18:
        d.indicator = "warning"
    return d


def _r7_default(a: Assessment, d: Decision) -> None:
    """R7: always assembled; R3/R4 later override the strengths they name."""
    d.fire("R7")
    line, policy = a.first_line, a.policy
    assert line is not None
    failed = set(a.failed_drugs)
    d.set("tki-lenvatinib", Strength.PREFERRED, "Most supporting evidence after ICI failure.",
          "Switching to TKI (especially lenvatinib) has the most supporting evidence after ICI failure; after "
          "lenvatinib there is no further line with strong evidence.", ("R7", "R7-sequence"), lenvatinib_dose(a))
    sorafenib = Strength.PREFERRED if "lenvatinib" in failed else Strength.ALTERNATIVE
    d.set("tki-sorafenib", sorafenib, "Keeps RCT-backed third-line options; best safety profile among TKIs.",
          "Sorafenib keeps RCT-backed third-line options (regorafenib, cabozantinib, ramucirumab if AFP ≥ 400 "
          "ng/mL) and had the best safety profile among TKIs in the Cabibbo model; lower PFS and ORR than "
          "lenvatinib." + (" Lenvatinib was part of the first line, so sorafenib leads the TKIs." if
                           sorafenib is Strength.PREFERRED else ""),
          ("R7-sequence", "R7-sorafenib"), _fixed(a, "sorafenib"))
    d.set("tki-cabozantinib", Strength.CONSIDER, "Off-label after ICI; its trial followed sorafenib.",
          "Off-label sequencing after ICI: CELESTIAL enrolled patients after sorafenib.", ("R7-ramucirumab",),
          _fixed(a, "cabozantinib"))
    d.set("tki-regorafenib", Strength.CONSIDER, "Off-label after ICI; its trial required tolerated sorafenib.",
          "Off-label sequencing after ICI: RESORCE required tolerated sorafenib.",
          ("R7-ramucirumab",), _fixed(a, "regorafenib"))
    afp = a.afp.current_value
    if afp is not None and afp >= AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:
        d.set("ramucirumab", Strength.CONSIDER, f"AFP {afp:g} ng/mL meets its trial's AFP ≥ 400 ng/mL criterion.",
              f"AFP {afp:g} ng/mL ≥ 400 ng/mL (REACH-2 criterion); the trial followed sorafenib.",
              ("R7-ramucirumab",), _fixed(a, "ramucirumab"))
    elif a.afp.status != "current":
        d.caveats.append("No current AFP in ng/mL: ramucirumab (only for AFP ≥ 400 ng/mL) was not evaluated.")
    aes = a.adverse_events
    irae = bool(aes and aes.immune_related)
    albi, ecog = a.albi.current_grade, a.performance.current_value
    if (not line.anti_ctla4 and not irae and albi is not None and albi <= policy.retrial_max_albi_grade
            and ecog is not None and ecog <= policy.retrial_max_ecog):
        d.set("ici-retrial-nivolumab-ipilimumab", Strength.CONSIDER,
              "Anti-CTLA-4 retrial after anti-PD-(L)1; small series, 12 % severe events.",
              f"ALBI grade {albi} and ECOG {ecog} (good liver function reserve and performance status "
              f"[derived: ALBI grade ≤ {policy.retrial_max_albi_grade}, ECOG ≤ {policy.retrial_max_ecog}]), no "
              "anti-CTLA-4 in the first line and no immune-related adverse event: retrial of ICI with ipilimumab "
              "(Roessler, Wong); 12 % grade ≥ 3 treatment-related events; must be considered cautiously.",
              ("R4-liver", "R4-wong", "ici-combination"), _fixed(a, "nivolumab_ipilimumab"))
    if (not irae and not line.stopped_for_toxicity and a.progression is not None
            and a.progression.hyperprogression != "yes" and _continuation_possible(a)):
        d.set("ici-continuation", Strength.CONSIDER, "ICI beyond progression, then a TKI: longest "
              "post-progression survival in one series.",
              f"Continue {_ici_names(a)} beyond progression, followed by a TKI: post-progression survival 15.3 "
              "months in that group (Talbot et al.); a hypothesis, not a trial result.", ("ici-continuation",))
    if a.progression is not None and a.progression.pattern == "systemic":
        d.caveats.append("Systemic (disseminated) progression: local ablative therapy for oligoprogression is not "
                         "offered.")


def _ici_names(a: Assessment) -> str:
    """The ICI that can be continued: the anti-PD-(L)1 of line 1 (anti-CTLA-4 such as STRIDE's tremelimumab is
    given as a limited number of doses and is not "continued")."""
    assert a.first_line is not None
    names = [d for d in a.first_line.ici_drugs if d not in _ANTI_CTLA4] or list(a.first_line.ici_drugs)
    return " + ".join(names)


def _continuation_possible(a: Assessment) -> bool:
    """The line-1 ICI is still given, or stopped within the policy's resumption window."""
    line = a.first_line
    assert line is not None
    if line.ici_active:
        return True
    last = line.ici_end or line.last_ici_date
    return last is not None and (a.context.today - last).days <= a.policy.ici_resume_days


def _r3_r4_adverse_events(a: Assessment, d: Decision) -> None:
    """R3 (prior irAE → TKI) and R4 (prior bevacizumab-type event → ICI retrial); together, the weaker wins."""
    aes = a.adverse_events
    irae = aes.immune_related if aes else ()
    bev = aes.bevacizumab_related if aes else ()
    line, policy = a.first_line, a.policy
    assert line is not None
    if not irae and not bev:
        return
    irae_text = ", ".join(f"{'severe ' if f.severe else ''}{f.label}" for f in irae)
    bev_text = ", ".join(f.label for f in bev)
    severe = any(f.severe for f in irae)
    r3: dict[str, tuple[Strength, str]] = {}
    r4: dict[str, tuple[Strength, str]] = {}
    if irae:
        d.fire("R3")
        ici = Strength.AVOID if severe else Strength.CAUTION
        why = (f"Prior immune-related adverse event ({irae_text})"
               + (": ICI labels stop treatment permanently after severe events [derived]." if severe else "."))
        r3 = {"tki-lenvatinib": (Strength.PREFERRED, f"Prior immune-related {irae[0].label}: a switch to TKI is more "
                                 "strongly preferred."),
              "tki-sorafenib": (Strength.PREFERRED, f"Prior immune-related {irae[0].label}: a switch to TKI is more "
                                "strongly preferred."),
              "ici-retrial-nivolumab-ipilimumab": (ici, why), "ici-continuation": (ici, why)}
    if bev:
        d.fire("R4")
        albi, ecog = a.albi.current_grade, a.performance.current_value
        good = (albi is not None and albi <= policy.retrial_max_albi_grade and ecog is not None
                and ecog <= policy.retrial_max_ecog)
        cp = a.child_pugh.label if a.child_pugh.grade in {"B", "C"} else None
        if good:
            retrial = (Strength.PREFERRED, f"Prior {bev[0].label} on bevacizumab: ICI retrial without TKI; ALBI grade "
                       f"{albi}, ECOG {ecog}" + (f", but Child-Pugh {cp}: reserve not good by Child-Pugh." if cp
                                                 else " (good liver reserve)."))
        else:
            shown = (f"ALBI grade {albi}" if albi is not None else "no current ALBI") + (
                f", ECOG {ecog}" if ecog is not None else ", no current ECOG")
            limits = f"ALBI grade ≤ {policy.retrial_max_albi_grade}, ECOG ≤ {policy.retrial_max_ecog}"
            retrial = (Strength.CONSIDER, f"Prior {bev[0].label} on bevacizumab; {shown}: retrial needs good liver "
                       f"reserve [derived: {limits}].")
        anti_vegf = (Strength.CAUTION, f"Prior {bev[0].label} on bevacizumab: bleeding risk with anti-VEGF TKIs and "
                     "ramucirumab.")
        r4 = {code: anti_vegf for code in ANTI_VEGF_OPTIONS}
        r4["ici-retrial-nivolumab-ipilimumab"] = retrial
        r4["ici-continuation"] = (Strength.CONSIDER, "Prior bevacizumab-type event: continue the ICI without "
                                  "bevacizumab.")
    for code in dict.fromkeys([*r3, *r4]):
        choices = [c for c in (r3.get(code), r4.get(code)) if c]
        strength, reason = max(choices, key=lambda c: c[0].rank)
        if r3 and r4 and ROLES[code] == "systemic" and strength.rank < Strength.CONSIDER.rank:
            strength = Strength.CONSIDER
        if code == "ici-retrial-nivolumab-ipilimumab" and line.anti_ctla4:
            continue  # never offered after a first line with ipilimumab or tremelimumab (see _remove_failed_drugs)
        if code == "ici-continuation" and not _continuation_possible(a):
            continue
        if code == "ramucirumab" and d.option("ramucirumab") is None:
            continue  # R4 limits ramucirumab; only R7's AFP criterion offers it
        evidence = _adverse_event_evidence(code, code in r3, code in r4 and (not r3 or code not in r3
                                                                             or strength == r4[code][0]))
        dose = _option_dose(a, code)
        d.set(code, strength, reason, reason, evidence, dose)
    if irae and bev:
        d.warnings.append(WarningNote(f"Both a prior immune-related adverse event ({irae_text}) and a bevacizumab-type "
                                  f"event ({bev_text}): the paper gives no tie-break, so no systemic option is "
                                  "above consider. Discuss local therapy, supportive care and trials (tumour "
                                  "board).", "R3"))
        d.at_least("best-supportive-care", Strength.CONSIDER, "Conflicting constraints from both adverse events.",
                   "Both the immune-related and the bevacizumab-type constraint apply; supportive care is a "
                   "reasonable choice to discuss.", ("R8",))
        d.headline = (f"prior immune-related {irae[0].label} and {bev[0].label}; discuss local therapy, supportive "
                      "care and trials")
    elif irae:
        d.headline = f"prior immune-related {irae[0].label} on {_regimen(a)}; TKI switch preferred"
    else:
        retrial = d.option("ici-retrial-nivolumab-ipilimumab")
        good_reserve = (retrial is not None and retrial.strength is Strength.PREFERRED
                        and a.child_pugh.grade not in {"B", "C"})
        d.headline = f"{bev[0].label} on bevacizumab" + (", good liver reserve" if good_reserve else "") + \
            "; TKIs with caution"


def _adverse_event_evidence(code: str, named_by_r3: bool, bound_by_r4: bool) -> tuple[str, ...]:
    """The quotes an R3/R4 strength rests on: the binding rule's sentence first."""
    if code == "ici-retrial-nivolumab-ipilimumab":
        return ("R4", "R4-liver", "ici-combination") if bound_by_r4 else ("R3", "ici-combination")
    if code == "ici-continuation":
        return ("R4", "ici-continuation") if bound_by_r4 else ("R3", "ici-continuation")
    return ("R4",) if bound_by_r4 else ("R3", "R7-sequence") if named_by_r3 else ("R7",)


def _option_dose(a: Assessment, code: str) -> Dose | None:
    if code == "tki-lenvatinib":
        return lenvatinib_dose(a)
    names = {"tki-sorafenib": "sorafenib", "tki-cabozantinib": "cabozantinib", "tki-regorafenib": "regorafenib",
             "ramucirumab": "ramucirumab", "ici-retrial-nivolumab-ipilimumab": "nivolumab_ipilimumab"}
    return _fixed(a, names[code]) if code in names else None


def _regimen(a: Assessment) -> str:
    """The first-line regimen in clinicians' words (never the internal name ``other-ici``)."""
    assert a.first_line is not None
    return regimen_text(a.first_line.regimen, a.first_line.drugs)


def regimen_text(regimen: str, drugs: tuple[str, ...]) -> str:
    return " + ".join(drugs) if regimen == "other-ici" else regimen.replace("-", " + ")


def _r5_oligoprogression(a: Assessment, d: Decision) -> None:
    prog, policy = a.progression, a.policy
    if prog is None or prog.pattern != "oligoprogression":
        return
    d.fire("R5")
    organs = ", ".join(o.replace("-", " ") for o in prog.organs)
    count = prog.progressing_lesions or 0
    lesions = plural(count, "progressing lesion")
    d.set("local-ablative-therapy", Strength.ALTERNATIVE, f"Oligoprogression ({lesions}, {organs}): local therapy "
          "can be considered with continued ICI or a switch.",
          f"Oligoprogression: {lesions} in {organs}, progression at least {policy.oligo_min_days} days after the "
          f"first line started [derived: 1–{policy.oligo_max_lesions} lesions in ≤ {policy.oligo_max_organs} "
          "organs; the paper's '3–5' read as 'up to 5'; the day count stands in for ≥ 3 months of disease "
          "control]. SBRT favoured (little or no interruption of ICI, possible immune stimulation); transarterial "
          "therapy or radiofrequency ablation for liver lesions. Studies of SBRT for oligoprogression during ICI "
          "therapy in HCC are extremely rare.", ("R5", "R5-definition", "R5-rare"))
    d.warnings.append(WarningNote("Evidence for local therapy here is thin.", "R5-rare"))
    continuation = d.option("ici-continuation")
    if continuation is not None and "R3" not in d.rules_fired and "R4" not in d.rules_fired:
        d.set("ici-continuation", Strength.ALTERNATIVE, "Continue the ICI if local therapy controls the "
              "oligoprogressing sites.", f"Continue {_ici_names(a)} if the oligoprogression sites can be well "
              "controlled by local ablative therapy.", ("R5-continue", "ici-continuation"))
    if not d.headline:
        d.headline = f"oligoprogression ({lesions}, {organs}): add local therapy"


def _r6_vascular_invasion(a: Assessment, d: Decision) -> None:
    prog = a.progression
    if prog is None or not prog.new_vascular_invasion:
        return
    d.fire("R6")
    systemic = prog.pattern == "systemic"
    d.set("sbrt-vascular-invasion", Strength.CONSIDER if systemic else Strength.PREFERRED,
          "SBRT can control new vascular invasion, added to the systemic choice." if not systemic else
          "Disseminated progression: local therapy may not be suitable; SBRT to the thrombus only case by case.",
          "New vascular invasion after the first line started: SBRT (or other locoregional therapy) to the tumour "
          "thrombus, added to systemic therapy." + (" With disseminated progression, LRT may not be suitable."
                                                     if systemic else ""),
          ("R6", "R7-systemic") if systemic else ("R6",))
    continuation = d.option("ici-continuation")
    if continuation is not None and "R3" not in d.rules_fired and "R4" not in d.rules_fired:
        d.at_least("ici-continuation", Strength.CONSIDER, continuation.reason, continuation.rationale,
                   continuation.evidence)
    d.warnings.append(WarningNote("New vascular invasion: HR 2.15 for overall survival.", "R6-prognosis"))
    if prog.vascular_invasion_i81_only:
        d.warnings.append(WarningNote("Coded as portal vein thrombosis (tumour or bland?): confirm tumour thrombus on "
                                  "imaging."))
    if not d.headline:
        d.headline = "new vascular invasion (HR 2.15 for OS): add SBRT"


def _r2b_hyperprogression(a: Assessment, d: Decision) -> None:
    prog, policy = a.progression, a.policy
    if prog is None or prog.hyperprogression != "yes":
        return
    d.fire("R2b")
    change = f", tumour burden +{prog.sum_change * 100:.0f} %" if prog.sum_change is not None else ""
    d.at_least("best-supportive-care", Strength.CONSIDER, "Hyperprogression makes further treatment harder to "
               "choose.", f"Hyperprogression (progression within {policy.hyper_max_days} days of the first-line "
               f"start with more than {policy.hyper_min_growth_percent} % growth [derived]{change}).", ("R2b",))
    d.warnings.append(WarningNote(f"Hyperprogression{change}, within {policy.hyper_max_days} days of the first-line "
                              "start [derived].", "R2b"))


def _r8_individualise(a: Assessment, d: Decision) -> None:
    d.fire("R8")
    line = a.first_line
    assert line is not None
    trials = eligible_trials(a)
    if trials:
        reason = f"{plural(len(trials), 'trial')} of the paper's Table 1 designed for patients after this first line."
    else:
        reason = "No trial of the paper's Table 1 is designed for patients after this first line."
    if a.fitness in {"frail", "weigh"}:
        reason += " Trials usually require ECOG 0–1 and Child-Pugh A."
    d.set("clinical-trial", Strength.CONSIDER, reason, reason + " No results are claimed; decisions also depend on "
          "patient preference, liver function and cost.", ("R8", "R8-trials"))


def eligible_trials(a: Assessment) -> list:
    """The paper's Table 1 trials whose eligibility fits line 1 (site policy ``trials``)."""
    line = a.first_line
    if line is None:
        return []
    failed = set(a.failed_drugs)
    return [trial for trial in a.policy.trials if trial.eligible(line.regimen, line.drugs)
            and not (failed and set(trial.drugs) <= failed)]  # never the regimen that just failed


def _remove_failed_drugs(a: Assessment, d: Decision) -> None:
    """A failed drug is never an option; ICI continuation and the nivolumab + ipilimumab retrial after anti-PD-(L)1
    alone are the two deliberate exceptions (nivolumab + ipilimumab never after anti-CTLA-4)."""
    failed = set(a.failed_drugs)
    line = a.first_line
    assert line is not None
    for option in list(d.options):
        drugs = OPTION_DRUGS.get(option.code, ())
        blocked = any(drug in failed for drug in drugs) or (
            option.code == "ici-retrial-nivolumab-ipilimumab" and line.anti_ctla4)
        if blocked:
            d.options.remove(option)
            d.excluded.append((option.code, "failed-first-line"))


def _r0t_surveillance(a: Assessment, d: Decision) -> None:
    """R0t: first line stopped for toxicity without progression: surveillance leads, systemic options at most
    consider, each "at progression"."""
    d.set("surveillance", Strength.PREFERRED, "First line stopped for toxicity without progression: imaging on "
          "the usual schedule.", "The first line was stopped for toxicity and no progression is documented: "
          "surveillance imaging on the usual schedule [derived: standard practice, not from the paper]; choose "
          "second-line therapy at progression.", ())
    for option in d.options:
        if option.role in {"systemic", "trial"}:
            if option.strength.rank < Strength.CONSIDER.rank:
                option.strength = Strength.CONSIDER
            if not option.reason.startswith("At progression"):
                reason = option.reason.removeprefix("Prior ")
                option.reason = "At progression: " + reason[:1].lower() + reason[1:]
    d.headline = "first line stopped for toxicity, no progression"


def _possible_hcc_and_age(a: Assessment, d: Decision) -> None:
    if a.diagnosis.status == "possible-hcc":
        d.cap(lambda o: True, Strength.ALTERNATIVE, "Possible HCC only: confirm the diagnosis first.")
        d.warnings.append(WarningNote("The diagnosis is coded as an unspecified liver malignancy (possible HCC): "
                                      "confirm the diagnosis before choosing second-line therapy."))
    age = a.patient.age_years
    if age is not None and age < 18:
        d.warnings.append(WarningNote(f"Age {age}: the evidence is from adults."))


def _r1_r2_fitness(a: Assessment, d: Decision) -> None:
    """R1 (performance status) and R2 (liver function) by fitness tier (clinical-rules.md §2, §3)."""
    policy, tier = a.policy, a.fitness
    ecog, grade = a.performance.current_value, a.albi.current_grade
    cp = a.child_pugh.grade if a.child_pugh.status == "computed" else None
    ecog_flag = ecog is None or ecog >= policy.weigh_ecog_at_least
    liver_flag = grade is None or grade >= policy.weigh_albi_grade_at_least or cp in (
        *policy.weigh_child_pugh, *policy.frail_child_pugh)
    if tier == "fit":
        return
    if ecog_flag:
        d.fire("R1")
    if liver_flag:
        d.fire("R2")
    quotes = (("R1",) if ecog is not None and ecog_flag else ()) + (
        ("R2",) if grade is not None and grade >= policy.weigh_albi_grade_at_least else ()) + ("R1-weigh",)
    why = fitness_reason(a)
    if tier == "frail":
        d.set("best-supportive-care", Strength.PREFERRED, f"{why}: further treatment may speed deterioration.",
              f"{why} [derived: BCLC stage D; the trials the paper cites enrolled ECOG 0–1 and Child-Pugh A]. "
              "Poor performance status and poor liver function at progression are prognostic categories from "
              "the cited studies, not treatment cut-offs.", quotes)
        d.cap(lambda o: o.role in {"systemic", "local"}, Strength.CAUTION, f"{why}: at most with caution.")
    elif tier == "weigh":
        d.at_least("best-supportive-care", Strength.ALTERNATIVE, f"{why}: weigh risk and benefit of further "
                   "treatment.", f"{why}: the risk-benefit balance needs to be carefully weighed; these are "
                   "prognostic categories from the cited studies, not treatment cut-offs.", quotes)
        d.cap(lambda o: o.code != "best-supportive-care", Strength.ALTERNATIVE, "")
    else:
        d.needs = [name for name, missing in (("ECOG", ecog is None), ("ALBI", grade is None)) if missing]
        d.cap(lambda o: True, Strength.ALTERNATIVE, "")
        d.caveats.append(f"{' and '.join(d.needs)} not current: no option is preferred until "
                         f"{'they are' if len(d.needs) > 1 else 'it is'} measured; fitness is never assumed.")
    if tier == "frail":
        d.warnings.append(WarningNote(f"{why}: further treatment may accelerate deterioration (prognostic categories, "
                                  "not treatment cut-offs).", "R1-weigh"))
    elif tier == "weigh":
        d.warnings.append(WarningNote(f"{why}: weigh best supportive care (prognostic categories, not treatment "
                                  "cut-offs).", "R1-weigh"))


def fitness_reason(a: Assessment) -> str:
    """What puts the patient in a tier other than fit, in clinicians' words ("ECOG 3", "Child-Pugh C10")."""
    policy = a.policy
    ecog, grade = a.performance.current_value, a.albi.current_grade
    cp = a.child_pugh if a.child_pugh.status == "computed" else None
    found = []
    if ecog is not None and ecog >= policy.weigh_ecog_at_least:
        found.append(f"ECOG {ecog}" + (f" from Karnofsky {a.performance.karnofsky}"
                                       if a.performance.source == "karnofsky" else ""))
    if grade is not None and grade >= policy.weigh_albi_grade_at_least:
        found.append(f"ALBI grade {grade}")
    if cp is not None and cp.grade in (*policy.weigh_child_pugh, *policy.frail_child_pugh):
        found.append(f"Child-Pugh {cp.label}")
    return ", ".join(found) or "fitness unknown"


def _hepatic_caveats(a: Assessment, d: Decision) -> None:
    grade = a.albi.current_grade
    cp = a.child_pugh.grade if a.child_pugh.status == "computed" else None
    if (grade is not None and grade >= 3) or cp in {"B", "C"}:
        for option in d.options:
            if option.code in TKI_OPTIONS and "Child-Pugh A" not in option.rationale:
                option.rationale += " The TKI trials enrolled Child-Pugh A."
        d.caveats.append("Liver function below the trials' entry criteria: the TKI trials enrolled Child-Pugh A.")
