"""Progression on first-line ICI and its pattern (clinical-rules.md §2 "Progression", "Lesion progression",
"Progression pattern", "Hyperprogression"; clinical-codes.md §7).

Evidence, dated after ICI start: disease status worsened (97509-4/88040-1 = 271299001); a medication stopped
for no response (266721009); a new metastasis or vascular-invasion Condition (none of the same organ before);
a new or growing lesion — RECIST-like: new (first measured after ICI start) or longest dimension ≥ 20 % and
≥ 5 mm over its nadir (the smallest value from the last pre-ICI measurement on).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from . import terminology as t
from .measurements import Problem, day, plural
from .medications import FirstLine
from .policy import Policy, default_policy
from .record import PatientRecord, codings, concept_text, condition_date, observation_date, reference_id

# The [derived] thresholds (oligoprogression limits, hyperprogression window and growth) live in the site policy.
GROWTH_FRACTION = 0.20
GROWTH_MIN_MM = 5.0


@dataclass(frozen=True)
class Lesion:
    key: str
    organ: str
    label: str
    measurements: tuple[tuple[date, float], ...]  # (date, longest dimension mm), oldest first
    progressing: bool
    new: bool
    progression_date: date | None


@dataclass(frozen=True)
class Progression:
    documented: bool
    date: date | None
    pattern: str  # oligoprogression | new-vascular-invasion | systemic | indeterminate | not-documented
    new_vascular_invasion: bool
    progressing_lesions: int | None  # None without lesion data
    organs: tuple[str, ...]
    hyperprogression: str  # yes | no | not-assessable
    evidence: tuple[str, ...]  # human-readable, for the card detail
    lesions: tuple[Lesion, ...] = ()
    new_metastasis_organs: tuple[str, ...] = ()
    reason: str = ""  # why the pattern is what it is (e.g. what would settle "indeterminate")
    sum_change: float | None = None  # fractional change in sum of longest dimensions (hyperprogression)
    vascular_invasion_i81_only: bool = False  # the only evidence is ICD-10-CM I81 (tumour or bland thrombus?)
    problems: tuple[Problem, ...] = field(default=())


def metastasis_organ(concept: object, body_site: object = None) -> str | None:
    """The organ of a secondary-malignancy code; for a code that names no organ (SNOMED 128462008, ICD-10-CM
    C78.8/C79.8x …) the organ comes from ``Condition.bodySite`` (mCODE style), else ``other``."""
    for system, code in codings(concept):
        organ = None
        if system == t.ICD10CM:
            organ = next((o for prefix, o in t.METASTASIS_ICD10_PREFIX_ORGAN if code.startswith(prefix)), None)
        elif system == t.SNOMED and code in t.METASTASIS_SNOMED_ORGAN:
            organ = t.METASTASIS_SNOMED_ORGAN[code]
        if organ is not None:
            return _site_organ(body_site) or organ if organ == "other" else organ
    return None


def _site_organ(body_site: object) -> str | None:
    for system, code in codings(body_site):
        if system == t.SNOMED and code in t.BODY_SITE_SNOMED_ORGAN:
            return t.BODY_SITE_SNOMED_ORGAN[code]
    texts = " ".join(concept_text(c) for c in (body_site if isinstance(body_site, list) else [body_site])).lower()
    return next((organ for organ in t.ORGANS[:-1] if organ.replace("-", " ") in texts), None)


def is_vascular_invasion(concept: object, site_snomed: frozenset[str] = frozenset()) -> bool:
    """ICD-10-CM I81 (portal vein thrombosis), or a SNOMED code of the site policy."""
    return any((s == t.ICD10CM and c.startswith(t.VASCULAR_INVASION_ICD10_PREFIXES))
               or (s == t.SNOMED and c in site_snomed) for s, c in codings(concept))


def _organ_of(body_structure: dict | None) -> tuple[str, str]:
    """(organ name, label) of a lesion's BodyStructure."""
    if body_structure is None:
        return "other", "lesion"
    location = body_structure.get("location")
    for system, code in codings(location):
        if system == t.SNOMED and code in t.BODY_SITE_SNOMED_ORGAN:
            organ = t.BODY_SITE_SNOMED_ORGAN[code]
            return organ, body_structure.get("description") or organ
    text = concept_text(location).lower()
    for organ in t.ORGANS:
        if organ.replace("-", " ") in text:
            return organ, body_structure.get("description") or text
    return "other", body_structure.get("description") or text or "lesion"


def _longest_dimension_mm(obs: dict) -> float | None:
    for component in obs.get("component") or ():
        if not isinstance(component, dict):
            continue
        if any(s == t.LOINC and c == t.TUMOR_LONGEST_DIMENSION for s, c in codings(component.get("code"))):
            quantity = component.get("valueQuantity") or {}
            unit = quantity.get("code") or quantity.get("unit")
            if isinstance(quantity.get("value"), int | float) and unit in t.LENGTH_TO_MM:
                return float(quantity["value"]) * t.LENGTH_TO_MM[unit]
    return None


def _lesions(record: PatientRecord, start: date) -> tuple[list[Lesion], list[Problem]]:
    series: dict[str, list[tuple[date, float]]] = defaultdict(list)
    structures: dict[str, dict | None] = {}
    problems: list[Problem] = []
    for obs in record.observations({t.TUMOR_SIZE}):
        when, size = observation_date(obs), _longest_dimension_mm(obs)
        focus = next(iter(obs.get("focus") or ()), None)
        key = reference_id(focus, "BodyStructure")
        if when is None or size is None or key is None:
            missing = "a date" if when is None else "a longest dimension in mm or cm" if size is None else \
                "the lesion it measures"
            dated = f" on {day(when)}" if when else ""
            problems.append(Problem("lesion", "unreadable", f"a tumour size{dated} could not be read: it has no "
                                    f"{missing}"))
            continue
        series[key].append((when, size))
        structures.setdefault(key, record.resolve(focus, obs))
    lesions = []
    for key, points in series.items():
        points.sort()
        organ, label = _organ_of(structures.get(key))
        pre = [p for p in points if p[0] <= start]
        new = not pre
        progression_date = points[0][0] if new else None
        if not new:
            nadir = pre[-1][1]
            for when, size in points[len(pre):]:
                if size >= nadir * (1 + GROWTH_FRACTION) and size - nadir >= GROWTH_MIN_MM:
                    progression_date = when
                    break
                nadir = min(nadir, size)
        lesions.append(Lesion(key, organ, label, tuple(points), progression_date is not None, new,
                              progression_date))
    return lesions, problems


def _hyperprogression(lesions: list[Lesion], start: date, progression_date: date | None,
                      documented: bool, policy: Policy) -> tuple[str, float | None]:
    """Kato-style: progression < 60 days after ICI start and > 50 % rise in the sum of longest dimensions.

    The tumour burden is compared at the progression scan (the first post-ICI scan on or after the progression
    date; without progression, the latest scan) against the last pre-ICI measurement of each lesion.
    """
    baseline = {lesion.key: [p for p in lesion.measurements if p[0] <= start][-1][1]
                for lesion in lesions if any(p[0] <= start for p in lesion.measurements)}
    post_dates = sorted({p[0] for lesion in lesions for p in lesion.measurements if p[0] > start})
    if not baseline or not post_dates:
        return "not-assessable", None
    if documented and progression_date is None:
        return "not-assessable", None  # progression without a date: the 60-day test cannot be made
    at_or_after = [d for d in post_dates if progression_date and d >= progression_date]
    compared = at_or_after[0] if at_or_after else post_dates[-1]
    post_sum = 0.0
    for lesion in lesions:
        sizes = [size for when, size in lesion.measurements if start < when <= compared]
        if not sizes and lesion.key in baseline:
            return "not-assessable", None  # a baseline lesion was not re-measured: never "no" without the data
        post_sum += sizes[-1] if sizes else 0.0
    base_sum = sum(baseline.values())
    if base_sum <= 0:
        return "not-assessable", None
    change = post_sum / base_sum - 1
    early = progression_date is not None and (progression_date - start).days < policy.hyper_max_days
    return ("yes" if early and change * 100 > policy.hyper_min_growth_percent else "no"), change


def assess_progression(record: PatientRecord, line: FirstLine, policy: Policy | None = None) -> Progression:
    policy = policy or default_policy()
    start = line.start
    evidence: list[tuple[date | None, str]] = []
    problems: list[Problem] = []
    for obs in record.observations(t.DISEASE_STATUS):
        when = observation_date(obs)
        worsened = any(c == t.DISEASE_WORSENED for _s, c in codings(obs.get("valueCodeableConcept")))
        if when and when >= start and worsened:
            evidence.append((when, f"disease status worsened ({when})"))
    if line.stopped_for_progression:
        when = line.progression_stop_date if line.progression_stop_date and line.progression_stop_date > start else None
        evidence.append((when, f"{line.regimen} stopped for no response" + (f" ({when})" if when else "")))

    conditions = record.conditions()
    organs_before: set[str] = set()
    new_mets: dict[str, date] = {}
    vi_before, vi_after, vi_coded_beyond_i81 = False, None, False
    for cond in sorted(conditions, key=lambda c: condition_date(c) or date.min):
        when = condition_date(cond)
        organ = metastasis_organ(cond.get("code"), cond.get("bodySite"))
        if organ:
            if when is None or when <= start:
                organs_before.add(organ)
            elif organ not in organs_before:
                new_mets.setdefault(organ, when)
        if is_vascular_invasion(cond.get("code"), policy.vascular_invasion_snomed):
            if when is None or when <= start:
                vi_before = True
            else:
                vi_after = when if vi_after is None else vi_after
                vi_coded_beyond_i81 |= any(s == t.SNOMED and c in policy.vascular_invasion_snomed
                                           for s, c in codings(cond.get("code")))
    for organ, when in sorted(new_mets.items(), key=lambda item: item[1]):
        evidence.append((when, f"new {organ} metastasis ({when})"))
    new_vi = vi_after is not None and not vi_before
    if new_vi:
        evidence.append((vi_after, f"new vascular invasion ({vi_after})"))

    lesions, lesion_problems = _lesions(record, start)
    problems += lesion_problems
    progressing = [lesion for lesion in lesions if lesion.progressing]
    for lesion in progressing:
        kind = "new lesion" if lesion.new else "growing lesion"
        named = f": {lesion.label}" if lesion.label not in {lesion.organ, "lesion"} else ""
        evidence.append((lesion.progression_date, f"{kind} in {lesion.organ}{named} ({lesion.progression_date})"))

    dates = [when for when, _ in evidence if when]
    documented = bool(evidence)
    progression_date = min(dates) if dates else None
    organs = sorted({lesion.organ for lesion in progressing} | set(new_mets), key=t.ORGANS.index)
    extra_sites = [organ for organ in new_mets if organ not in {lesion.organ for lesion in progressing}]
    site_count = len(progressing) + len(extra_sites)
    hyper, change = (_hyperprogression(lesions, start, progression_date, documented, policy) if lesions
                     else ("not-assessable", None))

    pattern, reason = "not-documented", "no progression found after ICI start"
    if documented:
        lesions_max, organs_max, days_min = policy.oligo_max_lesions, policy.oligo_max_organs, policy.oligo_min_days
        systemic = (lesions and (site_count > lesions_max or len(organs) > organs_max)) or len(new_mets) >= 2
        controlled = progression_date is not None and (progression_date - start).days >= days_min
        if systemic:
            pattern, reason = "systemic", (f"progression beyond {lesions_max} lesions or {organs_max} organs, or "
                                           "new metastases in 2 or more organs")
        elif new_vi:
            pattern, reason = "new-vascular-invasion", "vascular invasion first recorded after the first line started"
        elif lesions and progressing and controlled:
            pattern, reason = "oligoprogression", (f"{plural(site_count, 'progressing lesion')} in "
                                                    f"{plural(len(organs), 'organ')}, progression {days_min} days or "
                                                    "more after the first line started")
        elif lesions and progressing:
            pattern, reason = "indeterminate", (f"limited progression, but less than {days_min} days of disease "
                                                "control on the first line")
        elif lesions:
            pattern, reason = "indeterminate", ("progression is documented, but no measured lesion meets the "
                                                "growth criterion; review the imaging")
        else:
            pattern, reason = "indeterminate", ("progression is documented without lesion measurements; "
                                                "lesion sizes (longest dimension) with each lesion's organ "
                                                "would settle the pattern")
    return Progression(
        documented=documented,
        date=progression_date,
        pattern=pattern,
        new_vascular_invasion=new_vi,
        progressing_lesions=len(progressing) if lesions else None,
        organs=tuple(organs),
        hyperprogression=hyper,
        evidence=tuple(text for _when, text in sorted(evidence, key=lambda e: (e[0] or date.max, e[1]))),
        lesions=tuple(lesions),
        new_metastasis_organs=tuple(sorted(new_mets, key=t.ORGANS.index)),
        reason=reason,
        sum_change=change,
        vascular_invasion_i81_only=new_vi and not vi_coded_beyond_i81,
        problems=tuple(problems),
    )
