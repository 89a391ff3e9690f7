"""``hcc-cds``: serve the service, replay fixtures, record hook requests, report feedback, migrate the database.

    hcc-cds serve [--host H] [--port P] [--no-demo-data]
    hcc-cds replay FILE [--hook HOOK] [--now ISO-DATETIME] [--check]
    hcc-cds record PATIENT-BUNDLE [--hook HOOK] [--draft-orders FILE] [--selection REF ...] [--now ISO]
    hcc-cds feedback-report
    hcc-cds db upgrade | purge | current
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from demo.fhirstore import FhirStore, FhirStoreError

from .config import ConfigError, Settings
from .db import DatabaseUnavailable
from .discovery import PREFETCH, SERVICES

HOOK_SERVICE = {service.hook: service.id for service in SERVICES.values()}
FIXTURE_EXTENSION = "hcc-cds.fixture"
REPO_ROOT = Path(__file__).resolve().parent.parent
UUID_MASK = "<uuid>"


class CliError(Exception):
    """A problem with the command's input; ``str(exc)`` is the one line printed."""


def parse_now(value: str) -> datetime:
    """An ISO 8601 date-time (``Z`` allowed; no zone = UTC); CliError when it is not one."""
    try:
        now = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise CliError(f"not an ISO 8601 date-time: {value!r}") from exc
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def load_json(path: str | Path) -> dict:
    """A JSON object from a file, or CliError naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path}: not a JSON object")
    return data


def prefetch_from_store(store: FhirStore, context: dict) -> dict:
    """Run every prefetch template against an in-memory store, as an EHR would (searchset Bundles)."""
    from urllib.parse import parse_qs

    from .fhir import substitute

    prefetch: dict = {}
    for key, (template, _required) in PREFETCH.items():
        query = substitute(template, context)
        assert query is not None
        resource_type, _, params = query.partition("?")
        if not params and "/" in resource_type:  # a read: Patient/{{context.patientId}}
            prefetch[key] = store.read(*resource_type.split("/", 1))
            continue
        parsed = {k: v for k, v in parse_qs(params).items() if k != "_count"}
        found = store.search(resource_type, parsed)
        entries = [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in found]
        # Medications referenced by the records, as a server includes them (_include=…:medication)
        for medication in _referenced_medications(store, found):
            entries.append({"fullUrl": f"Medication/{medication['id']}", "resource": medication,
                            "search": {"mode": "include"}})
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": entries}
    return prefetch


def _referenced_medications(store: FhirStore, resources: list[dict]) -> list[dict]:
    found: dict[str, dict] = {}
    for resource in resources:
        reference = resource.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if isinstance(ref, str) and ref.startswith("Medication/"):
            medication = store.read("Medication", ref.split("/", 1)[1])
            if medication is not None:
                found[medication["id"]] = medication
    return list(found.values())


def request_from_bundle(bundle: dict, hook: str = "patient-view", draft_orders: dict | None = None,
                        selections: list[str] | None = None, now: str | None = None) -> dict:
    """A complete hook request (full prefetch) for the patient in a fixture Bundle, evaluated at ``now`` or
    else at the Bundle's ``timestamp``. Any Bundle type works (collection, transaction as Synthea writes it,
    searchset); ``urn:uuid`` fullUrls are resolved. CliError when there is no evaluation time or no Patient."""
    evaluated_at = now or bundle.get("timestamp")
    if not isinstance(evaluated_at, str) or not evaluated_at:
        raise CliError("the Bundle has no timestamp: give the evaluation time with --now ISO-DATETIME")
    parse_now(evaluated_at)
    try:
        store = FhirStore.from_bundles([bundle])
    except FhirStoreError as exc:
        raise CliError(f"unusable Bundle: {exc}") from exc
    if not store.patients():
        raise CliError("the Bundle has no Patient resource")
    if len(store.patients()) > 1:
        raise CliError(f"the Bundle has {len(store.patients())} Patients: one patient per Bundle")
    patient = store.patients()[0]
    practitioners = store.search("Practitioner", {})
    encounters = store.search("Encounter", {"patient": [patient["id"]]})
    context: dict = {"userId": f"Practitioner/{practitioners[0]['id']}" if practitioners else "Practitioner/unknown",
                     "patientId": patient["id"]}
    if encounters:
        context["encounterId"] = encounters[0]["id"]
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = draft_orders or {"resourceType": "Bundle", "type": "collection", "entry": []}
    if hook == "order-select":
        context["selections"] = selections or []
    return {
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hcc-cds-fixture/{patient['id']}/{hook}")),
        "hook": hook,
        "context": context,
        "prefetch": prefetch_from_store(store, context),
        "extension": {FIXTURE_EXTENSION: {"evaluatedAt": evaluated_at}},
    }


def mask_uuids(response: dict) -> dict:
    """Replace card and suggestion uuids (random per call) so responses can be compared."""
    masked = json.loads(json.dumps(response))
    for card in masked.get("cards", []):
        if "uuid" in card:
            for link in card.get("links", []):
                if isinstance(link.get("appContext"), str):
                    link["appContext"] = link["appContext"].replace(card["uuid"], UUID_MASK)
            card["uuid"] = UUID_MASK
        for suggestion in card.get("suggestions", []):
            if "uuid" in suggestion:
                suggestion["uuid"] = UUID_MASK
    return masked


def expected_path(fixture: Path, hook: str) -> Path:
    stem = fixture.name.removesuffix(".json")
    if stem.endswith(f".{hook}"):
        stem = stem.removesuffix(f".{hook}")
    return fixture.parent.parent / "expected" / f"{stem}.{hook}.json"


def replay(fixture: Path, hook: str | None = None, now: str | None = None) -> tuple[dict, str, int]:
    """Run a fixture through the app in process: (response JSON, hook, HTTP status)."""
    from . import create_app

    data = load_json(fixture)
    is_bundle = data.get("resourceType") == "Bundle"
    request = request_from_bundle(data, hook or "patient-view", now=now) if is_bundle else data
    hook = request.get("hook", hook or "patient-view")
    if not isinstance(hook, str) or hook not in HOOK_SERVICE:
        raise CliError(f"{fixture}: not a patient Bundle or a hook request with a known 'hook'")
    extension = request.get("extension")
    recorded = extension.get(FIXTURE_EXTENSION) if isinstance(extension, dict) else None
    evaluated = now or (recorded.get("evaluatedAt") if isinstance(recorded, dict) else None)
    instant = parse_now(evaluated) if evaluated else datetime.now(UTC)
    settings = dataclasses.replace(Settings.from_env(), auth_mode="off", feedback_db="sqlite://",
                                   demo_data=False)
    app = create_app(settings, clock=lambda: instant)
    response = app.test_client().post(f"/cds-services/{HOOK_SERVICE[hook]}", json=request)
    return response.get_json(), hook, response.status_code


def _cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    data = load_json(path)
    if data.get("resourceType") == "Bundle" and args.hook not in (None, "patient-view"):
        print("order hooks need draft orders: replay a recorded request (hcc-cds record … --draft-orders FILE)",
              file=sys.stderr)
        return 2
    response, hook, status = replay(path, args.hook, args.now)
    text = json.dumps(response, indent=2, ensure_ascii=False)
    if not args.check:
        print(text)
        return 0 if status == 200 else 1
    golden = expected_path(Path(args.file), hook)
    if not golden.exists():
        print(f"no golden response at {golden}", file=sys.stderr)
        return 2
    expected = json.loads(golden.read_text(encoding="utf-8"))
    actual = mask_uuids(response)
    if actual == expected:
        print(f"ok {args.file} ({hook})")
        return 0
    diff = difflib.unified_diff(json.dumps(expected, indent=2, ensure_ascii=False).splitlines(),
                                json.dumps(actual, indent=2, ensure_ascii=False).splitlines(),
                                str(golden), "replayed", lineterm="")
    print("\n".join(diff))
    return 1


def _cmd_record(args: argparse.Namespace) -> int:
    bundle = load_json(args.bundle)
    if bundle.get("resourceType") != "Bundle":
        raise CliError(f"{args.bundle}: not a FHIR Bundle")
    draft = load_json(args.draft_orders) if args.draft_orders else None
    request = request_from_bundle(bundle, args.hook, draft, args.selection, now=args.now)
    print(json.dumps(request, indent=2, ensure_ascii=False))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from . import create_app, prepare_process

    # `serve` is the demo service; --no-demo-data only leaves out the embedded patients (contract §7).
    settings = dataclasses.replace(Settings.from_env(demo=True), demo_data=not args.no_demo_data)
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    prepare_process()
    if host not in ("127.0.0.1", "localhost", "::1") and settings.auth_mode != "required":
        print(f"warning: listening on {host} with HCC_CDS_AUTH={settings.auth_mode} and the demo's open FHIR "
              "allowlist: anyone who can reach this port can make the service call URLs; use gunicorn with "
              "production settings for anything but a local demo", file=sys.stderr)
    print(f"hcc-second-line-cds on http://{host}:{port}/cds-services"
          + (f" — demo FHIR server at http://{host}:{port}/fhir — open http://{host}:{port}/"
             if settings.demo_data else ""), flush=True)
    run_simple(host, port, app, threaded=True, use_reloader=False)
    return 0


def _database():  # type: ignore[no-untyped-def]
    from .db import Database

    settings = Settings.from_env()
    return Database(settings.feedback_db, settings.db_timeout)


def _cmd_feedback_report(_args: argparse.Namespace) -> int:
    from .feedback import feedback_report

    database = _database()
    database.ensure_schema()
    print(feedback_report(database.sessions))
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    """``db upgrade``: run the Alembic migrations (safe while the service runs); ``db purge``: delete expired
    JWT ids and issued-card records; ``db current``: the schema revision."""
    from .db import current_revision, head_revision, purge_expired, upgrade

    database = _database()
    if args.action == "upgrade":
        upgrade(database.engine)
        print(f"database schema at revision {current_revision(database.engine)} (head {head_revision()})")
    elif args.action == "purge":
        database.ensure_schema()
        with database.transaction() as session:
            jti, cards = purge_expired(session)
        print(f"purged {jti} expired JWT ids and {cards} expired issued-card records")
    else:
        print(current_revision(database.engine) or "none")
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    """`policy show`: the policy in force (HCC_CDS_POLICY or the bundled default); `policy check FILE`."""
    from cards.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.file if args.action == "check" else os.environ.get("HCC_CDS_POLICY") or None)
    except PolicyError as exc:
        print(f"policy error: {exc}", file=sys.stderr)
        return 2
    if args.action == "check":
        print(f"ok {args.file}: policy {policy.name} version {policy.version} (sha256 {policy.sha256})")
        return 0
    print(f"policy {policy.name} version {policy.version} from {policy.source}\nsha256 {policy.sha256}")
    for what, value in policy.values_in_force():
        print(f"  {what}: {value}")
    print(f"  lenvatinib: {policy.lenvatinib_low_mg} mg < {policy.lenvatinib_weight_kg:g} kg, "
          f"{policy.lenvatinib_high_mg} mg ≥ {policy.lenvatinib_weight_kg:g} kg, "
          f"{policy.lenvatinib_child_pugh_c_mg} mg at Child-Pugh C")
    for name, dose in policy.doses:
        print(f"  {name.replace('_', ' + ')}: {dose}")
    print(f"  site vascular-invasion SNOMED codes: {', '.join(sorted(policy.vascular_invasion_snomed)) or 'none'}")
    for trial in policy.trials:
        after = ", ".join(trial.eligible_after) + (f" (not after {', '.join(trial.excluded_drugs)})"
                                                    if trial.excluded_drugs else "")
        print(f"  trial {trial.id} phase {trial.phase}: {trial.design}; after {after}; completion "
              f"{trial.completion.isoformat()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcc-cds", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service (with the embedded demo FHIR data by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-demo-data", action="store_true", help="start without the embedded patients")
    serve.set_defaults(func=_cmd_serve)
    rep = commands.add_parser("replay", help="run a fixture (patient Bundle or hook request) in process")
    rep.add_argument("file")
    rep.add_argument("--hook", choices=sorted(HOOK_SERVICE))
    rep.add_argument("--now", help="evaluation time (ISO 8601); default: the fixture's recorded time")
    rep.add_argument("--check", action="store_true", help="compare with the golden response")
    rep.set_defaults(func=_cmd_replay)
    rec = commands.add_parser("record", help="print a full-prefetch hook request for a patient Bundle")
    rec.add_argument("bundle")
    rec.add_argument("--hook", default="patient-view", choices=sorted(HOOK_SERVICE))
    rec.add_argument("--draft-orders", help="a Bundle of draft orders (order-select/order-sign)")
    rec.add_argument("--selection", action="append", help="selected order, e.g. MedicationRequest/1")
    rec.add_argument("--now", help="evaluation time (ISO 8601); default: the Bundle's timestamp")
    rec.set_defaults(func=_cmd_record)
    pol = commands.add_parser("policy", help="show the site policy in force, or check a policy file")
    pol_actions = pol.add_subparsers(dest="action", required=True)
    pol_actions.add_parser("show", help="print the policy in force (HCC_CDS_POLICY or the bundled default)")
    check = pol_actions.add_parser("check", help="validate a policy file")
    check.add_argument("file")
    pol.set_defaults(func=_cmd_policy)
    report = commands.add_parser("feedback-report", help="acceptance and override rates per check and reason")
    report.set_defaults(func=_cmd_feedback_report)
    database = commands.add_parser("db", help="database schema (Alembic migrations) and purge of expired records")
    database.add_argument("action", choices=["upgrade", "purge", "current"])
    database.set_defaults(func=_cmd_db)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"hcc-cds: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"hcc-cds {args.command}: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"hcc-cds: database unavailable ({exc.reason})", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"hcc-cds: database error ({type(exc).__name__})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
