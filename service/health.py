"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .db import Database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: the database behind feedback and JWT replay records answers and its schema is migrated.

    503 names the reason (an error class such as ``OperationalError``, never a message, which could hold the
    database URL); the probe tries the database each time, so readiness returns by itself when it is back.
    """
    database: Database = current_app.extensions["hcc_cds_database"]
    reason = database.probe()
    if reason is not None:
        return jsonify({"status": "unavailable", "database": "unreachable", "reason": reason}), 503
    return jsonify({"status": "ok", "database": "ok"})
