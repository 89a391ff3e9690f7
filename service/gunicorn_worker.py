"""gunicorn's gthread worker, with its own error answers as JSON and its error log lines free of request data.

gunicorn answers requests it cannot parse (bad request line, header, chunk size; too long) itself, before the
app sees them: with an HTML page, and with a log line that quotes the offending line verbatim, which may be an
``Authorization`` header. Here the answer is a FHIR OperationOutcome like every other error of the service, and
the log line carries the reason code (the exception class) only (service-contract.md §6, §11).
"""

from __future__ import annotations

import json
import logging
import re
from ssl import SSLError

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from .logs import configure_logging, log_event

_STATUS = (  # (exception classes, status, reason phrase, issue code), first match wins
    ((http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName), 500, "Internal Server Error",
     "exception"),
    ((http_errors.LimitRequestLine,), 414, "URI Too Long", "too-long"),
    ((http_errors.LimitRequestHeaders,), 431, "Request Header Fields Too Large", "too-long"),
    ((http_errors.ExpectationFailed,), 417, "Expectation Failed", "not-supported"),
    ((http_errors.UnsupportedTransferCoding,), 501, "Not Implemented", "not-supported"),
    ((http_errors.ForbiddenProxyRequest, SSLError), 403, "Forbidden", "forbidden"),
    ((http_errors.ConfigurationProblem,), 500, "Internal Server Error", "exception"),
    ((http_errors.ParseException,), 400, "Bad Request", "invalid"),
)


def _reason_code(exc: BaseException) -> str:
    """``InvalidChunkSize`` -> ``invalid-chunk-size``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", type(exc).__name__).lower()


def error_bytes(status: int, phrase: str, issue_code: str) -> bytes:
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": issue_code, "diagnostics": phrase.lower()}]}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):
    """``worker_class`` of gunicorn.conf.py."""

    def init_process(self) -> None:
        configure_logging(self.cfg.loglevel)
        super().init_process()

    def handle_error(self, req, client, addr, exc) -> None:  # type: ignore[no-untyped-def]
        status, phrase, issue = 500, "Internal Server Error", "exception"
        for classes, code, text, issue_code in _STATUS:
            if isinstance(exc, classes):
                status, phrase, issue = code, text, issue_code
                break
        level = logging.ERROR if status >= 500 else logging.WARNING
        log_event("request", level=level, status=status, reason=_reason_code(exc), server="gunicorn",
                  method=getattr(req, "method", None) if req is not None else None)
        try:
            util.write_nonblock(client, error_bytes(status, phrase, issue))
        except Exception:  # the client went away
            self.log.debug("failed to send error response")
