"""Reading a JSON request body safely: size-limited (chunked bodies too), never a 500 on hostile input.

Werkzeug enforces ``MAX_CONTENT_LENGTH`` only when a Content-Length is sent; a chunked body over the limit would
otherwise arrive empty and be mistaken for "not JSON". A malformed chunked body (bad chunk size) makes the WSGI
server's reader raise while the app reads it. Deeply nested JSON raises RecursionError in the parser. A lone
UTF-16 surrogate (``"\\ud800"``, or its raw bytes) is not a Unicode character (RFC 8259 §8.2): Python's JSON
parser accepts it, but it cannot be encoded again, so it would break every later log line and error message.
"""

from __future__ import annotations

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from .errors import ServiceError
from .jsonparse import LoneSurrogate, loads


def _read_body() -> bytes:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            stream = request.environ.get("wsgi.input")
            data = stream.read(limit + 1) if stream is not None else b""
            if len(data) > limit:
                raise ServiceError(413, "request body too large", "body-too-large")
            return data
        return request.get_data(cache=True)  # Werkzeug raises 413 over MAX_CONTENT_LENGTH
    except (ServiceError, HTTPException):
        raise
    except (OSError, ValueError, EOFError) as exc:  # e.g. gunicorn's InvalidChunkSize (an IOError)
        raise ServiceError(400, "malformed request body (invalid chunked encoding)", "malformed-body") from exc
    except Exception as exc:  # a WSGI server's own parse error class, whatever it derives from
        raise ServiceError(400, "malformed request body", "malformed-body") from exc


def read_json() -> object | None:
    """The parsed body, or None when it is not JSON; ServiceError(413) when it is larger than allowed,
    ServiceError(400) when the body is malformed on the wire or holds a lone surrogate."""
    data = _read_body()
    try:
        return loads(data, refuse_lone_surrogates=True)
    except LoneSurrogate as exc:
        raise ServiceError(400, "request body holds a lone UTF-16 surrogate (not a Unicode character)",
                           "lone-surrogate") from exc
    except (ValueError, RecursionError):
        return None
