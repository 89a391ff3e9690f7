"""The service registry: ids, hooks, titles and prefetch templates (service-contract.md §1–§2).

Templates follow CDS Hooks 2.0 prefetch restrictions: a ``patient`` (or ``subject``) reference parameter,
token ``code`` with ``system|code`` joined by commas, and ``_count``. No category filters (EHRs file the same
finding under different categories), no chaining, no ``_include``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cards import terminology as t

_OBSERVATION_CODES = ",".join(f"{t.LOINC}|{code}" for code in t.OBSERVATION_CODES_OF_INTEREST)

# key -> (template, required). A required key that can be obtained neither from prefetch nor from the
# FHIR server makes the call fail with 412; an optional one is named on the data-quality card.
PREFETCH: dict[str, tuple[str, bool]] = {
    "patient": ("Patient/{{context.patientId}}", False),
    "conditions": ("Condition?patient={{context.patientId}}&_count=500", True),
    "observations": (f"Observation?patient={{{{context.patientId}}}}&code={_OBSERVATION_CODES}&_count=1000", True),
    "medicationStatements": ("MedicationStatement?patient={{context.patientId}}&_count=500", True),
    "medicationRequests": ("MedicationRequest?patient={{context.patientId}}&_count=500", True),
    "medicationAdministrations": ("MedicationAdministration?patient={{context.patientId}}&_count=500", False),
    "adverseEvents": ("AdverseEvent?subject=Patient/{{context.patientId}}&_count=500", False),
    "bodyStructures": ("BodyStructure?patient={{context.patientId}}&_count=500", False),
}


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str

    def discovery_entry(self) -> dict:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {key: template for key, (template, _required) in PREFETCH.items()},
            "usageRequirements": self.usage_requirements,
        }


_USAGE = ("Needs R4 Conditions, Observations and medication records of the patient, by prefetch or "
          "from fhirServer. Evidence: Hwang et al., Liver Cancer 2023.")

SERVICES: dict[str, Service] = {
    service.id: service
    for service in (
        Service(
            id="hcc-second-line-patient-view",
            hook="patient-view",
            title="HCC second-line therapy after first-line immunotherapy",
            description=(
                "For hepatocellular carcinoma that progressed on (or stopped for toxicity of) first-line "
                "immune checkpoint inhibitor-based therapy: ranked second-line options with rationale and "
                "evidence from Hwang et al., Liver Cancer 2023, and the data needed to decide."
            ),
            usage_requirements=_USAGE,
        ),
        Service(
            id="hcc-second-line-order-select",
            hook="order-select",
            title="HCC second-line order checks (selection)",
            description=(
                "Checks selected draft orders for HCC systemic therapy after first-line immunotherapy: "
                "a drug of the first line that failed, prior immune-related or bevacizumab-type adverse "
                "events, fitness (performance status, ALBI, Child-Pugh), the ramucirumab AFP criterion, the "
                "lenvatinib dose for weight and liver function, prior anti-CTLA-4."
            ),
            usage_requirements=_USAGE,
        ),
        Service(
            id="hcc-second-line-order-sign",
            hook="order-sign",
            title="HCC second-line order checks (signing)",
            description=(
                "The same checks as order-select, on every draft order about to be signed."
            ),
            usage_requirements=_USAGE,
        ),
    )
}


def discovery_document() -> dict:
    return {"services": [service.discovery_entry() for service in SERVICES.values()]}
