"""The demo around the service (architecture.md point 3): the embedded FHIR endpoint over the fixture patients,
its SMART authorization server and the demo EHR page. Registered only in demo mode, never in production."""

from __future__ import annotations

from flask import Flask

from service.config import Settings


def init_app(app: Flask, settings: Settings) -> None:
    """Register ``{base}/fhir`` (with ``.well-known/smart-configuration`` and ``auth/``) and the page at ``/``."""
    from . import ehr, fhir_endpoint, smart_auth

    store = fhir_endpoint.load_store(settings.fixtures_dir, fhir_endpoint.resolve_shift("today"))
    check = smart_auth.init_app(app, store, settings.app_client_id, settings.app_redirect_url)
    app.register_blueprint(fhir_endpoint.create_blueprint(settings.fixtures_dir, store=store, token_check=check))
    app.register_blueprint(ehr.create_blueprint(store))
