"""The demo EHR page at ``{base}/`` (service-contract.md §10): a CDS Client in the browser.

It lists the fixture patients; opening one fires ``patient-view`` at the service the way an EHR does
(``fhirServer`` = the embedded endpoint, no prefetch, so the service reads the chart itself) and shows the
cards: markdown rendered with marked and sanitised with DOMPurify (both vendored from npm, no CDN),
suggestions, links; accept/dismiss send CDS Hooks feedback. An order box fires ``order-select`` /
``order-sign`` for a chosen drug and dose. A card's SMART link gets a launch id the way the CDS Hooks sandbox
gets one (``POST {base}/fhir/_services/smart/Launch`` with the patient and the link's ``appContext``) and opens
``{link.url}?iss={base}/fhir&launch={id}`` in the app panel.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from .fhirstore import FhirStore

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# Drugs for the order box: (name, RxNorm ingredient code, default dose in mg, dose text). Codes as in the fixtures.
ORDERABLE = (
    ("lenvatinib", "1603296", 12, "mg orally once daily"),
    ("sorafenib", "495881", 400, "mg orally twice daily"),
    ("cabozantinib", "1363268", 60, "mg orally once daily"),
    ("regorafenib", "1312397", 160, "mg orally once daily, days 1–21 of 28"),
    ("ramucirumab", "1535922", 560, "mg IV every 2 weeks"),
    ("nivolumab", "1597876", 240, "mg IV every 2 weeks"),
    ("ipilimumab", "1094833", 210, "mg IV every 3 weeks"),
    ("atezolizumab", "1792776", 1200, "mg IV every 3 weeks"),
    ("bevacizumab", "253337", 1050, "mg IV every 3 weeks"),
)


def create_blueprint(store: FhirStore) -> Blueprint:
    bp = Blueprint("demo_ehr", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/demo/static")

    @bp.get("/")
    def page() -> str:
        patients = []
        for patient in store.patients():
            name = (patient.get("name") or [{}])[0]
            patients.append({
                "id": patient["id"],
                "name": " ".join([*name.get("given", []), name.get("family", "")]).strip() or patient["id"],
                "gender": patient.get("gender", ""),
                "birthDate": patient.get("birthDate", ""),
            })
        practitioner = next(iter(store.search("Practitioner", {})), None)
        return render_template("demo_ehr.html", patients=patients, orderable=ORDERABLE, rxnorm=RXNORM,
                               practitioner=f"Practitioner/{practitioner['id']}" if practitioner else None)

    return bp
