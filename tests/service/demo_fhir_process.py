"""Run the embedded demo FHIR endpoint (no date shift) as a separate HTTP server process for integration tests.

    python tests/service/demo_fhir_process.py PORT [AUTH_LOG] [--patients DIR]

With AUTH_LOG, every request's path and Authorization header are appended to that file (tests only). With
``--patients``, the endpoint serves that directory of patient Bundles instead of ``fixtures/patients`` (the
benchmark's 2,000-Observation record).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flask import Flask, request
from werkzeug.serving import run_simple

from demo.fhir_endpoint import create_blueprint

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("auth_log", nargs="?", type=Path)
    parser.add_argument("--patients", type=Path, default=ROOT / "fixtures" / "patients")
    args = parser.parse_args()
    auth_log = args.auth_log
    app = Flask("demo-fhir-process")
    app.register_blueprint(create_blueprint(args.patients, shift_to=None))
    if auth_log:
        @app.before_request
        def _record() -> None:
            with auth_log.open("a", encoding="utf-8") as handle:
                handle.write(f"{request.path}\t{request.headers.get('Authorization', '-')}\n")
    run_simple("127.0.0.1", args.port, app, threaded=True)


if __name__ == "__main__":
    main()
