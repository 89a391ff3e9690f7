"""Run the embedded demo FHIR endpoint (no date shift) as a separate HTTP server process for integration tests.

    python tests/service/demo_fhir_process.py PORT [AUTH_LOG]

With AUTH_LOG, every request's path and Authorization header are appended to that file (tests only).
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask, request
from werkzeug.serving import run_simple

from demo.fhir_endpoint import create_blueprint

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    port = int(sys.argv[1])
    auth_log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    app = Flask("demo-fhir-process")
    app.register_blueprint(create_blueprint(ROOT / "fixtures" / "patients", shift_to=None))
    if auth_log:
        @app.before_request
        def _record() -> None:
            with auth_log.open("a", encoding="utf-8") as handle:
                handle.write(f"{request.path}\t{request.headers.get('Authorization', '-')}\n")
    run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    main()
