"""The web and I/O edge of hcc-second-line-cds: app factory, blueprints, FHIR access, auth, feedback."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from datetime import datetime

from flask import Flask

from .config import Settings


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None) -> Flask:
    """Build the Flask app. Without ``settings``, read ``HCC_CDS_*`` from the environment.

    ``clock`` fixes the evaluation time (replay of fixtures, tests); live requests use the wall clock.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    if clock is not None:
        app.extensions["hcc_cds_clock"] = clock
    app.config["HCC_CDS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    from . import cors, db, errors, feedback, headers, health, hooks, logs, metrics

    logs.init_app(app)
    metrics.init_app(app)
    headers.init_app(app)
    errors.register_error_handlers(app)
    database = db.Database(settings.feedback_db, settings.db_timeout)
    app.extensions["hcc_cds_database"] = database
    app.extensions["hcc_cds_db"] = database.sessions
    app.extensions["hcc_cds_engine"] = database.engine
    try:
        database.ensure_schema()  # migrations run once under a lock; a database that is down is not fatal
    except db.DatabaseUnavailable as exc:
        from .logs import log_event

        log_event("database-unavailable", level=logging.WARNING, reason=exc.reason,
                  detail="starting without the database: hook calls answer without feedback bookkeeping, "
                         "/readyz says 503 until it is back")

    app.register_blueprint(health.bp)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(feedback.bp)
    from .app import bp as pathway_app

    app.register_blueprint(pathway_app)
    if settings.demo_data:
        import demo

        demo.init_app(app, settings)
    cors.init_app(app)
    _warn_about_settings(settings)
    return app


def _warn_about_settings(settings: Settings) -> None:
    """Say at start-up what would otherwise only show as every call failing with 401 or 412."""
    from .logs import log_event

    if settings.auth_mode == "required" and not settings.trusted_issuers:
        log_event("config-warning", level=logging.WARNING,
                  detail="HCC_CDS_AUTH=required but HCC_CDS_TRUSTED_ISSUERS is empty: every call gets 401")
    if settings.auth_mode != "off" and not settings.public_url:
        log_event("config-warning", level=logging.WARNING,
                  detail="HCC_CDS_PUBLIC_URL unset: JWT aud is checked against the Host header the request used")
    if not settings.fhir_allowlist:
        log_event("config-warning", level=logging.WARNING,
                  detail="HCC_CDS_FHIR_ALLOWLIST empty: data missing from prefetch cannot be fetched (412)")


def prepare_process() -> None:
    """Process-level tuning for a long-running server (gunicorn worker, ``hcc-cds serve``), called once.

    ``gc.freeze()`` moves everything alive after start-up (imported FHIR models, the app) out of the garbage
    collector's reach, so the full collections triggered by the ~100,000 short-lived objects of a large parsed
    request do not re-walk them: it removes the ~45 ms tail of full-prefetch requests (benchmarks/bench.py).
    """
    gc.collect()
    gc.freeze()
