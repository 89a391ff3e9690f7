"""Liveness and readiness probes."""

from __future__ import annotations

from service import create_app
from service.config import Settings


def test_healthz_answers_without_auth(tmp_path) -> None:
    app = create_app(Settings(auth_mode="required", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database(tmp_path) -> None:
    app = create_app(Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3"))
    client = app.test_client()
    assert client.get("/readyz").get_json() == {"status": "ok", "database": "ok"}
    app.extensions["hcc_cds_engine"].dispose()
    (tmp_path / "db.sqlite3").unlink()
    (tmp_path / "db.sqlite3").mkdir()  # the database file is now a directory: SQLite cannot open it
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
