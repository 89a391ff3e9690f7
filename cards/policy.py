"""The site policy: every [derived] threshold of clinical-rules.md v2 in one validated file (service-contract.md §9).

The bundled default (``cards/data/policy-default.toml``) holds exactly the values of clinical-rules.md. A site
file is validated against ``POLICY_SCHEMA`` (JSON Schema 2020-12); an unknown key, a wrong type or an impossible
value raises ``PolicyError`` with one line naming the key and the reason. The rules *and* the sentences that
state a threshold read the same frozen ``Policy``, so a card can never state a value the rule does not use.
"""

from __future__ import annotations

import calendar
import hashlib
import tomllib
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "policy-default.toml"
CHILD_PUGH_CLASSES = ("A", "B", "C")
REGIMENS = ("atezolizumab-bevacizumab", "durvalumab-tremelimumab", "durvalumab", "nivolumab-ipilimumab",
            "camrelizumab-rivoceranib", "tislelizumab", "lenvatinib-pembrolizumab", "other-ici")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message is one line naming the key and the reason."""


def _int(low: int, high: int) -> dict:
    return {"type": "integer", "minimum": low, "maximum": high}


def _section(properties: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": sorted(properties),
            "properties": properties}


_CLASSES = {"type": "array", "items": {"enum": list(CHILD_PUGH_CLASSES)}, "uniqueItems": True}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
POLICY_SCHEMA: dict = _section({
    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    "version": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,32}$"},
    "current": _section({"days": _int(1, 365)}),
    "fitness": _section({
        "frail_ecog_at_least": _int(1, 5), "frail_child_pugh": _CLASSES,
        "weigh_ecog_at_least": _int(1, 5), "weigh_albi_grade_at_least": _int(1, 3), "weigh_child_pugh": _CLASSES,
    }),
    "treatment_history": _section({"course_join_days": _int(0, 180), "ici_resume_days": _int(0, 365)}),
    "oligoprogression": _section({"max_lesions": _int(1, 20), "max_organs": _int(1, 8),
                                  "min_days_after_start": _int(0, 730)}),
    "hyperprogression": _section({"max_days_after_start": _int(1, 365), "min_growth_percent": _int(1, 1000)}),
    "adverse_events": _section({"irae_days_after_ici_end": _int(0, 730), "bevacizumab_days_after_end": _int(0, 730),
                                "drug_effect_link_days": _int(0, 365)}),
    "ici_retrial": _section({"max_albi_grade": _int(1, 3), "max_ecog": _int(0, 4)}),
    "doses": _section({
        "lenvatinib_weight_kg": {"type": "number", "exclusiveMinimum": 20, "maximum": 200},
        "lenvatinib_low_mg": _int(1, 24), "lenvatinib_high_mg": _int(1, 24), "lenvatinib_child_pugh_c_mg": _int(1, 24),
        "sorafenib": _TEXT, "cabozantinib": _TEXT, "regorafenib": _TEXT, "ramucirumab": _TEXT,
        "nivolumab_ipilimumab": _TEXT,
    }),
    "site_codes": _section({
        "vascular_invasion_snomed": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{6,18}$"},
                                     "uniqueItems": True},
        "extra_drug_names": {"type": "object", "additionalProperties": {
            "type": "array", "items": {"type": "string", "minLength": 3, "maxLength": 80}}},
    }),
    "trials": {"type": "array", "maxItems": 50, "items": _section({
        "id": {"type": "string", "pattern": "^NCT[0-9]{8}$"},
        "phase": {"type": "string", "pattern": "^[A-Za-z0-9/ ]{1,12}$"},
        "design": _TEXT,
        "eligible_after": {"type": "array", "minItems": 1, "uniqueItems": True,
                           "items": {"enum": [*REGIMENS, "any-ici"]}},
        "excluded_drugs": {"type": "array", "items": {"type": "string", "pattern": "^[a-z-]{3,40}$"}},
        "drugs": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[a-z0-9-]{3,40}$"}},
        "completion": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?$"},
    })},
})
_VALIDATOR = Draft202012Validator(POLICY_SCHEMA)


@dataclass(frozen=True)
class Trial:
    """One trial of the paper's Table 1 with the first lines it enrols after and its estimated completion."""

    id: str
    phase: str
    design: str
    eligible_after: tuple[str, ...]
    excluded_drugs: tuple[str, ...]
    drugs: tuple[str, ...]  # the trial's systemic drugs (a trial of only the drugs that just failed is not listed)
    completion: date  # a month counts as its last day (clinical-rules.md §5)
    completion_text: str  # as written in the policy

    def eligible(self, regimen: str, drugs: tuple[str, ...]) -> bool:
        """True when a first line of ``regimen`` (with ``drugs``) fits the trial's enrolment criteria."""
        regimen_fits = "any-ici" in self.eligible_after or regimen in self.eligible_after
        return regimen_fits and not set(drugs) & set(self.excluded_drugs)


@dataclass(frozen=True)
class Policy:
    """Every [derived] value in force, with the file's name, version and sha256 (contract §9)."""

    name: str
    version: str
    sha256: str
    current_days: int
    frail_ecog_at_least: int
    frail_child_pugh: tuple[str, ...]
    weigh_ecog_at_least: int
    weigh_albi_grade_at_least: int
    weigh_child_pugh: tuple[str, ...]
    course_join_days: int
    ici_resume_days: int
    oligo_max_lesions: int
    oligo_max_organs: int
    oligo_min_days: int
    hyper_max_days: int
    hyper_min_growth_percent: int
    irae_days_after_ici_end: int
    bevacizumab_days_after_end: int
    drug_effect_link_days: int
    retrial_max_albi_grade: int
    retrial_max_ecog: int
    lenvatinib_weight_kg: float
    lenvatinib_low_mg: int
    lenvatinib_high_mg: int
    lenvatinib_child_pugh_c_mg: int
    doses: tuple[tuple[str, str], ...]  # fixed-dose texts by option name
    vascular_invasion_snomed: frozenset[str]
    extra_drug_names: tuple[tuple[str, tuple[str, ...]], ...]
    trials: tuple[Trial, ...]
    source: str  # the file it came from (shown by `hcc-cds policy show`)

    def dose(self, name: str) -> str:
        return dict(self.doses)[name]

    def extension(self) -> dict:
        """The ``policy`` member of the recommendation extension."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def values_in_force(self) -> list[tuple[str, str]]:
        """(what, value) of every [derived] value, in clinicians' words, for the card caveat and the app."""
        return [
            ("current", f"≤ {self.current_days} days"),
            ("frail", f"ECOG ≥ {self.frail_ecog_at_least} or Child-Pugh {'/'.join(self.frail_child_pugh) or '–'}"),
            ("weigh", f"ECOG ≥ {self.weigh_ecog_at_least}, ALBI grade ≥ {self.weigh_albi_grade_at_least} or "
                      f"Child-Pugh {'/'.join(self.weigh_child_pugh) or '–'}"),
            ("same course", f"started within {self.course_join_days} days"),
            ("oligoprogression", f"1–{self.oligo_max_lesions} lesions, ≤ {self.oligo_max_organs} organs, "
                                 f"≥ {self.oligo_min_days} days"),
            ("hyperprogression", f"< {self.hyper_max_days} days, > {self.hyper_min_growth_percent} %"),
            ("ICI retrial", f"ALBI grade ≤ {self.retrial_max_albi_grade}, ECOG ≤ {self.retrial_max_ecog}"),
            ("event windows", f"{self.irae_days_after_ici_end} days after the ICI, "
                              f"{self.bevacizumab_days_after_end} after bevacizumab"),
            ("ICI resumption", f"≤ {self.ici_resume_days} days"),
        ]


def _completion(text: str) -> date:
    parts = [int(p) for p in text.split("-")]
    if len(parts) == 2:
        return date(parts[0], parts[1], calendar.monthrange(parts[0], parts[1])[1])
    return date(parts[0], parts[1], parts[2])


def _where(error) -> str:  # type: ignore[no-untyped-def]
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"{'.'.join(filter(None, [path, unknown[0] if unknown else '']))}: unknown key"
    if error.validator == "required":
        missing = sorted(set(error.schema["required"]) - set(error.instance))
        return f"{'.'.join(filter(None, [path, missing[0] if missing else '']))}: missing"
    return f"{path or 'policy'}: {error.message}"


def parse_policy(data: bytes, source: str) -> Policy:
    """Validate and freeze a policy from TOML bytes; PolicyError names the first problem in one line."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{source}: not valid TOML ({str(exc).splitlines()[0]})") from None
    errors = sorted(_VALIDATOR.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise PolicyError(f"{source}: {_where(errors[0])}")
    doses = raw["doses"]
    if doses["lenvatinib_low_mg"] > doses["lenvatinib_high_mg"]:
        raise PolicyError(f"{source}: doses.lenvatinib_low_mg: must not exceed doses.lenvatinib_high_mg")
    fitness = raw["fitness"]
    if fitness["weigh_ecog_at_least"] > fitness["frail_ecog_at_least"]:
        raise PolicyError(f"{source}: fitness.weigh_ecog_at_least: must not exceed fitness.frail_ecog_at_least")
    seen: set[str] = set()
    for index, trial in enumerate(raw["trials"]):
        if trial["id"] in seen:
            raise PolicyError(f"{source}: trials.{index}.id: {trial['id']} is listed twice")
        seen.add(trial["id"])
        try:
            _completion(trial["completion"])
        except ValueError:
            raise PolicyError(f"{source}: trials.{index}.completion: not a calendar date") from None
    return Policy(
        name=raw["name"], version=raw["version"], sha256=hashlib.sha256(data).hexdigest(),
        current_days=raw["current"]["days"],
        frail_ecog_at_least=fitness["frail_ecog_at_least"], frail_child_pugh=tuple(fitness["frail_child_pugh"]),
        weigh_ecog_at_least=fitness["weigh_ecog_at_least"],
        weigh_albi_grade_at_least=fitness["weigh_albi_grade_at_least"],
        weigh_child_pugh=tuple(fitness["weigh_child_pugh"]),
        course_join_days=raw["treatment_history"]["course_join_days"],
        ici_resume_days=raw["treatment_history"]["ici_resume_days"],
        oligo_max_lesions=raw["oligoprogression"]["max_lesions"],
        oligo_max_organs=raw["oligoprogression"]["max_organs"],
        oligo_min_days=raw["oligoprogression"]["min_days_after_start"],
        hyper_max_days=raw["hyperprogression"]["max_days_after_start"],
        hyper_min_growth_percent=raw["hyperprogression"]["min_growth_percent"],
        irae_days_after_ici_end=raw["adverse_events"]["irae_days_after_ici_end"],
        bevacizumab_days_after_end=raw["adverse_events"]["bevacizumab_days_after_end"],
        drug_effect_link_days=raw["adverse_events"]["drug_effect_link_days"],
        retrial_max_albi_grade=raw["ici_retrial"]["max_albi_grade"],
        retrial_max_ecog=raw["ici_retrial"]["max_ecog"],
        lenvatinib_weight_kg=float(doses["lenvatinib_weight_kg"]),
        lenvatinib_low_mg=doses["lenvatinib_low_mg"], lenvatinib_high_mg=doses["lenvatinib_high_mg"],
        lenvatinib_child_pugh_c_mg=doses["lenvatinib_child_pugh_c_mg"],
        doses=tuple((k, v) for k, v in doses.items() if isinstance(v, str)),
        vascular_invasion_snomed=frozenset(raw["site_codes"]["vascular_invasion_snomed"]),
        extra_drug_names=tuple((k, tuple(v)) for k, v in sorted(raw["site_codes"]["extra_drug_names"].items())),
        trials=tuple(Trial(t["id"], t["phase"], t["design"], tuple(t["eligible_after"]), tuple(t["excluded_drugs"]),
                           tuple(t["drugs"]), _completion(t["completion"]), t["completion"]) for t in raw["trials"]),
        source=source,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path`` (a TOML file), or the bundled default when ``path`` is None or empty."""
    target = Path(path) if path else DEFAULT_POLICY_PATH
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{target}: cannot be read ({exc.strerror or exc})") from None
    return parse_policy(data, "the bundled default" if target == DEFAULT_POLICY_PATH else str(target))


@cache
def default_policy() -> Policy:
    """The bundled default policy (exactly the values of clinical-rules.md)."""
    return load_policy(None)
