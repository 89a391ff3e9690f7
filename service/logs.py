"""Structured JSON-lines logging on the ``hcc_cds`` logger (one object per line on stderr).

One access line per request (``event: "request"``) with method, path (the route rule, or the path without
query string when no route matched), status, ``duration_ms``, ``request_id`` (also returned as
``X-Request-ID``) and, when a view put them on ``flask.g``, ``hook_instance``, ``service_id`` and
``timings`` (stage -> ms). Headers, bodies, query strings, tokens and clinical values are never logged.

Other modules log through ``log_event(event, **fields)``; any field whose name contains "token" or
"authorization" is dropped (and the formatter drops them again, whatever logged them).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

LOGGER_NAME = "hcc_cds"
log = logging.getLogger(LOGGER_NAME)

_FIELDS_ATTR = "hcc_fields"
_SENSITIVE_MARKERS = ("token", "authorization")
_MAX_STRING = 500
# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message", "asctime", "taskName", _FIELDS_ATTR,
}


def _is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in _SENSITIVE_MARKERS)


def _clean(value: Any) -> Any:
    """JSON-safe, bounded value."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else value[:_MAX_STRING] + "…"
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if not _is_sensitive(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return _clean(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, message (when not the event), fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        extra.update(getattr(record, _FIELDS_ATTR, None) or {})
        data["event"] = extra.pop("event", None) or "log"
        if message and message != data["event"]:
            data["message"] = _clean(message)
        for name, value in extra.items():
            if not _is_sensitive(name) and name not in data:
                data[name] = _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            # Type and frames only: exception messages can carry request data.
            data["exc_type"] = record.exc_info[0].__name__
            data["exc_frames"] = [
                f"{frame.filename}:{frame.lineno}:{frame.name}"
                for frame in traceback.extract_tb(record.exc_info[2])
            ][-10:]
        return json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (survives stream swaps, e.g. pytest capture)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # type: ignore[no-untyped-def]
        pass


def configure_logging(level: str = "INFO") -> logging.Logger:
    """Attach the JSON handler to ``hcc_cds`` once (idempotent) and set its level."""
    resolved = logging.getLevelName(str(level).upper())
    log.setLevel(resolved if isinstance(resolved, int) else logging.INFO)
    if not any(getattr(handler, "_hcc_cds", False) for handler in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._hcc_cds = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    # Records keep propagating (child loggers such as ``hcc_cds.fhirstore`` and pytest's caplog rely on it).
    # gunicorn and the Werkzeug server put no handler on the root logger, so each line is written once.
    log.propagate = True
    return log


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event. Fields named like tokens or authorization are dropped."""
    safe = {name: value for name, value in fields.items() if not _is_sensitive(name)}
    if has_request_context() and "request_id" not in safe:
        request_id = g.get("request_id")
        if request_id:
            safe["request_id"] = request_id
    safe["event"] = event
    log.log(level, event, extra={_FIELDS_ATTR: safe})


def init_app(app: Flask) -> None:
    settings = app.config.get("HCC_CDS")
    configure_logging(getattr(settings, "log_level", "INFO"))
    # The Werkzeug development server (hcc-cds serve) logs every request line with its query string, which
    # can carry patient ids; our JSON access line replaces it. Its warnings and errors still show.
    werkzeug_log = logging.getLogger("werkzeug")
    if werkzeug_log.level == logging.NOTSET:
        werkzeug_log.setLevel(logging.WARNING)

    @app.before_request
    def _start_request() -> None:
        g.request_id = str(uuid.uuid4())
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        request_id = g.get("request_id") or str(uuid.uuid4())
        response.headers["X-Request-ID"] = request_id
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        rule = request.url_rule.rule if request.url_rule is not None else request.path
        fields: dict[str, Any] = {
            "method": request.method,
            "path": rule,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "request_id": request_id,
        }
        for name in ("service_id", "hook_instance"):
            value = g.get(name)
            if value is not None:
                fields[name] = value
        timings = g.get("timings")
        if isinstance(timings, dict) and timings:
            fields["timings"] = {str(stage): _ms(value) for stage, value in timings.items()}
        reason = g.get("error_reason")
        if response.status_code >= 400:
            fields["reason"] = reason or f"http-{response.status_code}"
        iss = g.get("auth_iss")
        if iss:
            fields["auth_iss"] = iss
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        log_event("request", level=level, **fields)
        return response


def _ms(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value
