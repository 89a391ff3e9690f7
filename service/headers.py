"""Response headers every answer carries: no caching (CDS responses hold patient data) and no MIME sniffing.

``Cache-Control: no-store`` (RFC 9111 §5.2.2.5) keeps cards and FHIR JSON out of browser and proxy caches;
``X-Content-Type-Options: nosniff`` stops a browser from treating JSON as HTML or script.
"""

from __future__ import annotations

from flask import Flask, Response


def init_app(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
