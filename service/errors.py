"""JSON error responses: every 4xx/5xx is a FHIR OperationOutcome, never an HTML page or a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, has_request_context, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("hcc_cds")

# OperationOutcome issue codes (http://hl7.org/fhir/issue-type) by HTTP status.
_ISSUE_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               412: "incomplete", 413: "too-costly", 415: "not-supported", 422: "business-rule",
               429: "throttled"}


# Reason codes logged with every 4xx/5xx (service-contract.md §11) when the raise site names none.
_DEFAULT_REASON = {400: "bad-request", 401: "unauthorized", 404: "not-found", 405: "method-not-allowed",
                   412: "required-data-unobtainable", 413: "too-large", 415: "unsupported-media-type",
                   503: "unavailable"}


class ServiceError(Exception):
    """An error with an HTTP status, a message that is safe to show to the caller, and a short reason code that
    is safe to log (never data)."""

    def __init__(self, status: int, message: str, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or _DEFAULT_REASON.get(status, "error")
        self.headers = headers or {}


def _note_reason(reason: str) -> None:
    """Put the reason on ``flask.g`` for the access log line (service/logs.py)."""
    if has_request_context():
        g.error_reason = reason


def error_response(status: int, message: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": _ISSUE_CODE.get(status, "exception"), "diagnostics": message}],
    }
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        _note_reason(exc.reason)
        response = error_response(exc.status, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        messages = {404: "not found", 405: "method not allowed", 413: "request body too large",
                    415: "unsupported media type: send application/json"}
        _note_reason(_DEFAULT_REASON.get(status, "http-" + str(status)))
        response = error_response(status, messages.get(status, exc.name.lower()))
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(RecursionError)
    def _too_deep(_exc: RecursionError) -> Response:
        _note_reason("too-deep")
        return error_response(400, "request nested too deeply")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:  # pragma: no cover - exercised by fuzz tests only
        log.error("unhandled error", extra={"event": "error", "error_type": type(exc).__name__})
        _note_reason("internal-error")
        return error_response(500, "internal error")
