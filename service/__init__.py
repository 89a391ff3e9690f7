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

    The FHIR R4 models the core validates with are imported now rather than on the first request. Then
    ``gc.freeze()`` moves everything alive (those models, the app) out of the garbage collector's reach, and the
    first-generation threshold goes from 700 to 50,000 objects. A 2,000-Observation request holds ~27,000 young
    tracked objects at once (the parsed body, the record's index). With the default thresholds each request ran
    ~35 young collections and, every few requests, a full one that re-walked all of them: a median of 4.9 ms of
    collector time per request, and 20-33 ms on the requests with a full one (the p95 tail of benchmarks/bench.py
    section 1). With 50,000, the request's objects are freed by reference counting before a collection is due:
    no collector time in 60 such requests. The cost: at most ~50,000 cyclic objects wait longer to be freed.
    """
    from cards.record import load_models

    load_models()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
