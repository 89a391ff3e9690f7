"""Order-entry checks for order-select and order-sign (clinical-rules.md §4).

One rule set, two presentations: the checks read the same Assessment and the same ``Decision`` that the
patient-view card shows (fitness tier, failed drugs, R3/R4 findings), and return ``OrderFinding``s; ``render``
turns them into cards. For a patient where R0 holds, each draft MedicationRequest with a recognised drug is
checked:

- ``irae-ici``: an ICI after an immune-related adverse event (R3) → ``warning``;
- ``bev-event-antivegf``: an anti-VEGF TKI, bevacizumab or ramucirumab after a bevacizumab-type event (R4) →
  ``warning``;
- ``poor-status``: any systemic therapy in fitness tier ``weigh`` or ``frail`` → ``warning``;
- ``failed-drug``: a drug of the first line that progressed → ``warning``;
- ``ramucirumab-afp``: ramucirumab with a current AFP < 400 ng/mL, or none → ``warning``;
- ``prior-ctla4``: anti-CTLA-4 after a first line that already contained it → ``info``;
- ``lenvatinib-dose``: a daily dose that does not match the weight → ``info`` with an ``update`` suggestion,
  ``isRecommended`` only in tier ``fit``; never an increase in tier ``frail``, at ALBI grade 3 or Child-Pugh C.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from . import terminology as t
from .assessment import Assessment, assess
from .context import EvaluationContext
from .draft_orders import (
    DraftOrder,
    OrderContextError,
    check_order_context,
    draft_resources,
    names,
    read_draft_orders,
    selected,
)
from .markers import AFP_RAMUCIRUMAB_THRESHOLD_NG_ML
from .order_update import updated_order
from .policy import Policy, default_policy
from .record import PatientRecord
from .render import UuidFactory, first_line_text, md, new_uuid, order_card, when
from .rules import Decision, decide, fitness_reason, lenvatinib_mg, regimen_text

CHECKS = ("irae-ici", "bev-event-antivegf", "poor-status", "failed-drug", "ramucirumab-afp", "prior-ctla4",
          "lenvatinib-dose")
_INDICATOR_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class OrderCheckResult:
    cards: list[dict]
    assessment: Assessment
    decision: Decision


@dataclass
class OrderFinding:
    """One check that fired on one draft order: what render needs, in clinicians' words."""

    check: str
    indicator: str
    summary: str
    reason: str
    data: list[str]
    quotes: list[str]  # evidence keys
    caveats: list[str] = field(default_factory=list)
    suggestion: dict | None = None


def _title(drugs: Iterable[t.Drug]) -> str:
    text = names(drugs)
    return text[:1].upper() + text[1:]


def _plain(text: object) -> str:
    """Record text for a summary (plain text, not Markdown): one line, no HTML angle brackets."""
    return " ".join(str(text).replace("<", " ").replace(">", " ").split())


def _first_line_data(a: Assessment) -> str:
    return f"First line: {md(first_line_text(a))}"


def _irae_ici(a: Assessment, order: DraftOrder, evaluated: list[DraftOrder]) -> OrderFinding | None:
    """R3: an ICI ordered after an immune-related adverse event of first-line ICI therapy."""
    icis = [d for d in order.drugs if d.ici]
    irae = a.adverse_events.immune_related if a.adverse_events else ()
    if not icis or not irae:
        return None
    first = irae[0]
    severe = any(f.severe for f in irae)
    data = [f"Immune-related adverse event: {md(f.label)} ({md(f.code)}){', severe' if f.severe else ''}, "
            f"{when(f.date)}" for f in irae]
    data.append(_first_line_data(a))
    quotes = ["R3"]
    if any(d.anti_ctla4 for o in evaluated for d in o.drugs):
        quotes.append("ici-combination")
    return OrderFinding(
        "irae-ici", "warning",
        f"{_title(icis)} ordered after {'severe ' if severe else ''}immune-related {_plain(first.label)} on the "
        "first-line ICI: the paper prefers a switch to a TKI",
        "An immune checkpoint inhibitor is ordered although the patient had an immune-related adverse event on "
        "first-line ICI-based therapy. The paper prefers a switch to a TKI more strongly after immune-related "
        "adverse events" + (" and, after a severe event, ICI labels stop treatment permanently [derived]."
                            if severe else "."),
        data, quotes)


def _bev_event(a: Assessment, d: Decision, order: DraftOrder) -> OrderFinding | None:
    """R4: an anti-VEGF TKI, bevacizumab or ramucirumab ordered after a bevacizumab-type event."""
    vegf = [drug for drug in order.drugs if drug.anti_vegf]
    events = a.adverse_events.bevacizumab_related if a.adverse_events else ()
    if not vegf or not events:
        return None
    line = a.first_line
    assert line is not None
    data = [f"Bevacizumab-type event: {md(f.label)} ({md(f.code)}){', severe' if f.severe else ''}, "
            f"{when(f.date)}" for f in events]
    data.append(_first_line_data(a))
    data.append(f"ALBI grade {a.albi.grade} ({a.albi.score:.2f}), {when(a.albi.date)} ({a.albi.status})"
                if a.albi.score is not None else f"ALBI {a.albi.status}")
    retrial = d.option("ici-retrial-nivolumab-ipilimumab")
    if retrial is None:
        alternative = ("The first line already contained anti-CTLA-4, so the ipilimumab-retrial evidence does not "
                       "cover the usual alternative; discuss local therapy, supportive care or a trial.")
    elif retrial.strength.value == "preferred":
        alternative = ("With good liver function reserve, retrial of ICI-based therapy without TKI (nivolumab + "
                       "ipilimumab) is the paper's preferred second-line choice.")
    else:
        alternative = ("Retrial of ICI-based therapy without TKI is the paper's alternative, but only with good liver "
                       f"function reserve [derived: ALBI grade ≤ {a.policy.retrial_max_albi_grade}].")
    return OrderFinding(
        "bev-event-antivegf", "warning",
        f"{_title(vegf)} ordered after {_plain(events[0].label)} on bevacizumab: anti-VEGF bleeding risk",
        "An anti-VEGF agent is ordered although the patient had a bevacizumab-type event (bleeding, thrombosis or "
        f"perforation) during first-line {regimen_text(line.regimen, line.drugs)}; anti-VEGF TKIs and the anti-VEGFR2 "
        f"antibody ramucirumab carry the same risk. {alternative}",
        data, ["R4", "R4-liver"])


def _poor_status(a: Assessment, order: DraftOrder) -> OrderFinding | None:
    """R1/R2: systemic therapy ordered in fitness tier weigh or frail."""
    if a.fitness not in {"weigh", "frail"}:
        return None
    why = fitness_reason(a)
    quotes = (["R1"] if a.performance.current_value is not None
              and a.performance.current_value >= a.policy.weigh_ecog_at_least else [])
    quotes += ["R2"] if (a.albi.current_grade or 0) >= a.policy.weigh_albi_grade_at_least else []
    data = []
    if a.performance.value is not None:
        data.append(f"Performance status: ECOG {a.performance.value}, {when(a.performance.date)} "
                    f"({a.performance.status})")
    if a.albi.score is not None:
        data.append(f"ALBI {a.albi.score:.2f}, grade {a.albi.grade}, {when(a.albi.date)} ({a.albi.status})")
    if a.child_pugh.score is not None:
        data.append(f"Child-Pugh {a.child_pugh.label}")
    lead = "best supportive care is preferred" if a.fitness == "frail" else "weigh best supportive care"
    return OrderFinding(
        "poor-status", "warning",
        f"{_title(order.drugs)} ordered with {why}: {lead}",
        f"Systemic therapy is ordered with {why} at progression after ICI failure. The risk-benefit balance needs to "
        "be carefully weighed; these are prognostic categories from the cited studies, not treatment cut-offs.",
        data, [*quotes, "R1-weigh"],
        [f"Fitness tiers are [derived] (site policy): frail = ECOG ≥ {a.policy.frail_ecog_at_least} or Child-Pugh "
         f"{'/'.join(a.policy.frail_child_pugh)}; weigh = ECOG ≥ {a.policy.weigh_ecog_at_least}, ALBI grade ≥ "
         f"{a.policy.weigh_albi_grade_at_least} or Child-Pugh {'/'.join(a.policy.weigh_child_pugh)}."])


def _failed_drug(a: Assessment, order: DraftOrder) -> OrderFinding | None:
    """A drug of the first line that progressed, ordered again."""
    again = sorted(d.name for d in order.drugs if d.name in a.failed_drugs)
    if not again:
        return None
    ici = any(name in t.ICI_NAMES for name in again)
    return OrderFinding(
        "failed-drug", "warning",
        f"{again[0][:1].upper()}{again[0][1:]}{' and ' + ', '.join(again[1:]) if again[1:] else ''} ordered again: "
        "part of the first line that progressed",
        f"{', '.join(again)} {'was' if len(again) == 1 else 'were'} part of the first line, which progressed."
        + (" If this continues the ICI beyond progression on purpose, override with a reason." if ici else ""),
        [_first_line_data(a)], ["R7"])


def _ramucirumab_afp(a: Assessment, order: DraftOrder) -> OrderFinding | None:
    """R7: ramucirumab only if AFP ≥ 400 ng/mL (REACH-2); warn when the current AFP is lower or missing."""
    if not any(d.name == "ramucirumab" for d in order.drugs):
        return None
    afp = a.afp
    value = afp.current_value
    if value is not None and value >= AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:
        return None
    if value is not None:
        shown, data = f"AFP {value:g} ng/mL (< 400)", [f"AFP {value:g} ng/mL, {when(afp.date)} (current)"]
    else:
        shown = "no current AFP in ng/mL"
        if afp.status == "not-evaluated":
            data = [f"AFP: latest result ({when(afp.date)}) is in IU/mL: not evaluated against 400 ng/mL"]
        elif afp.ng_per_ml is not None:
            data = [f"AFP {afp.ng_per_ml:g} ng/mL, {when(afp.date)} ({afp.status}: not current)"]
        else:
            data = [f"AFP {afp.status}"]
    return OrderFinding(
        "ramucirumab-afp", "warning",
        f"Ramucirumab ordered with {shown}: survival benefit shown only for AFP ≥ 400 ng/mL",
        "Ramucirumab prolonged survival only in patients with AFP ≥ 400 ng/mL (REACH-2); "
        + ("this patient's current AFP is below that." if value is not None
           else "the record has no current AFP in ng/mL to confirm it. Order an AFP (ng/mL) before signing."),
        data, ["R7-ramucirumab"], [f"'Current' means dated within {a.current_days} days [derived, site policy]."])


def _prior_ctla4(a: Assessment, order: DraftOrder, all_orders: list[DraftOrder]) -> OrderFinding | None:
    """Anti-CTLA-4 retrial after a first line that already contained anti-CTLA-4."""
    line = a.first_line
    assert line is not None
    ctla4 = [d for d in order.drugs if d.anti_ctla4]
    if not ctla4 or not line.anti_ctla4:
        return None
    partners = sorted({d.name for o in all_orders for d in o.drugs if d.ici and not d.anti_ctla4})
    regimen = " + ".join([*partners, *sorted(d.name for d in ctla4)])
    prior = ", ".join(d.name for d in t.DRUGS if d.anti_ctla4 and d.name in line.drugs)
    return OrderFinding(
        "prior-ctla4", "info",
        f"{regimen[:1].upper()}{regimen[1:]} after first-line {regimen_text(line.regimen, line.drugs)}: "
        "retrial evidence (after anti-PD-(L)1 only) does not cover it",
        "The evidence for ipilimumab-based ICI retrial comes from patients whose first line was anti-PD-(L)1 only "
        f"(Wong et al., Roessler et al.); this patient's first line already contained anti-CTLA-4 ({prior}). "
        "Consider TKI, local therapy or a clinical trial.",
        [_first_line_data(a)], ["R4-wong", "R4-liver"])


def _lenvatinib_dose(a: Assessment, order: DraftOrder, patient_id: str, new_id: UuidFactory) -> OrderFinding | None:
    """Lenvatinib dose against the weight (and Child-Pugh C); an ``update`` suggestion rewrites the draft."""
    if not any(d.name == "lenvatinib" for d in order.drugs):
        return None
    policy, weight = a.policy, a.weight
    ordered = f"{order.dose.daily_mg:g} mg/day ({order.dose.text})" if order.dose else "dose not readable"
    caveats = ["Doses come from the product label and REFLECT (not from the paper); adjust for toxicity and "
               "local protocols."]
    low, high, cut = policy.lenvatinib_low_mg, policy.lenvatinib_high_mg, policy.lenvatinib_weight_kg
    if weight.current_kg is None:
        last = (f"last weight {weight.kg:g} kg on {when(weight.date)} ({weight.status})" if weight.kg is not None
                else f"weight {weight.status}")
        return OrderFinding(
            "lenvatinib-dose", "info",
            f"Lenvatinib dose not checked: no current body weight ({low} mg if < {cut:g} kg, "
            f"{high} mg if ≥ {cut:g} kg)",
            f"The lenvatinib dose depends on body weight ({low} mg once daily below {cut:g} kg, {high} mg from "
            f"{cut:g} kg), and the record has no weight from the last {a.current_days} days. Record the weight and "
            "check the dose.", [f"Body weight: {last}", f"Ordered: {ordered}"], [], caveats)
    if order.dose is None:
        return None
    expected = lenvatinib_mg(weight.current_kg, policy)
    if a.child_pugh.grade == "C":
        expected = min(expected, policy.lenvatinib_child_pugh_c_mg)
    ordered_mg = order.dose.daily_mg
    if abs(ordered_mg - expected) < 0.01:
        return None
    band = f"< {cut:g} kg" if weight.current_kg < cut else f"≥ {cut:g} kg"
    data = [f"Body weight: {weight.current_kg:g} kg, {when(weight.date)} (current)", f"Ordered: {ordered}"]
    increase = expected > ordered_mg
    held = _increase_withheld(a) if increase else None
    direction = ("lower than the weight-based dose" if increase else "too high for the weight")
    if held:
        return OrderFinding(
            "lenvatinib-dose", "info",
            f"Lenvatinib {ordered_mg:g} mg/day for {weight.current_kg:g} kg is {direction}; lower dose kept ({held})",
            f"The weight gives {expected} mg once daily ({band}), but with {held} an increase is not suggested: the "
            "lower dose may be an intended reduction.", data, [], caveats)
    description = (f"Change the lenvatinib dose from {ordered_mg:g} mg/day to {expected} mg orally once daily "
                   f"(weight {weight.current_kg:g} kg, {band}).")
    suggestion = None
    updated = updated_order(order.resource, patient_id, expected) if order.reference else None
    if updated is not None:
        suggestion = {"label": f"Change lenvatinib to {expected} mg once daily", "uuid": new_id(),
                      "isRecommended": a.fitness == "fit",
                      "actions": [{"type": "update", "description": description, "resource": updated}]}
    else:
        caveats.append("The draft order could not be rewritten automatically: change the dose by hand.")
    if a.fitness != "fit":
        caveats.append(f"Fitness {a.fitness}: the change is offered, not recommended.")
    return OrderFinding(
        "lenvatinib-dose", "info",
        f"Lenvatinib {ordered_mg:g} mg/day for {weight.current_kg:g} kg is {direction}: weight-based dose "
        f"{expected} mg once daily",
        f"Lenvatinib is dosed by body weight: {low} mg once daily below {cut:g} kg, {high} mg from {cut:g} kg. The "
        f"draft orders {ordered_mg:g} mg/day; the current weight gives {expected} mg once daily."
        + (" Keep a lower dose only if it is an intended dose reduction." if increase else ""),
        data, [], caveats, suggestion)


def _increase_withheld(a: Assessment) -> str | None:
    """Why a dose increase is never suggested: frail, ALBI grade 3 or Child-Pugh C (clinical-rules.md §4)."""
    if a.fitness == "frail":
        return f"frail ({fitness_reason(a)})"
    if a.albi.current_grade == 3:
        return "ALBI grade 3"
    if a.child_pugh.grade == "C":
        return f"Child-Pugh {a.child_pugh.label}"
    return None


def evaluate_orders(resources: Iterable[dict], now: datetime, patient_id: str, draft_orders: dict,
                    selections: list[str] | None, *, policy: Policy | None = None,
                    unavailable: tuple[str, ...] = (), new_id: UuidFactory = new_uuid) -> OrderCheckResult:
    """Order-entry cards for the draft orders of order-sign (``selections`` None: all) or order-select (only the
    selected ``Type/id``s). ``[]`` when R0 does not hold or nothing applies.

    Raises OrderContextError for an unusable draftOrders Bundle or a selection that is not a draft order.
    """
    drafts = draft_resources(draft_orders)
    evaluated = drafts if selections is None else selected(drafts, selections)
    record = PatientRecord(resources, patient_id)
    assessment = assess(record, EvaluationContext(now, policy or default_policy()), unavailable=tuple(unavailable))
    decision = decide(assessment)
    if not decision.applicable:
        return OrderCheckResult([], assessment, decision)
    orders = read_draft_orders(drafts, evaluated, record)
    all_orders = read_draft_orders(drafts, drafts, record)
    found: list[tuple[int, int, int, dict]] = []
    for number, order in enumerate(orders):
        findings = [
            _irae_ici(assessment, order, orders),
            _bev_event(assessment, decision, order),
            _poor_status(assessment, order),
            _failed_drug(assessment, order),
            _ramucirumab_afp(assessment, order),
            _prior_ctla4(assessment, order, all_orders),
            _lenvatinib_dose(assessment, order, patient_id, new_id),
        ]
        for finding in findings:
            if finding is not None:
                card = order_card(finding, order, assessment, new_id)
                found.append((_INDICATOR_RANK[finding.indicator], number, CHECKS.index(finding.check), card))
    found.sort(key=lambda item: item[:3])
    return OrderCheckResult([card for *_key, card in found], assessment, decision)


__all__ = ["CHECKS", "OrderCheckResult", "OrderContextError", "OrderFinding", "check_order_context",
           "evaluate_orders"]
