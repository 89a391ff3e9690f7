"""Reading a JSON request body safely: size-limited (chunked bodies too), never a 500 on hostile input.

Werkzeug enforces ``MAX_CONTENT_LENGTH`` only when a Content-Length is sent; a chunked body over the limit would
otherwise arrive empty and be mistaken for "not JSON". Deeply nested JSON raises RecursionError in the parser.
"""

from __future__ import annotations

import json

from flask import current_app, request

from .errors import ServiceError


def read_json() -> object | None:
    """The parsed body, or None when it is not JSON; ServiceError(413) when it is larger than allowed."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        stream = request.environ.get("wsgi.input")
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise ServiceError(413, "request body too large")
    else:
        data = request.get_data(cache=True)  # Werkzeug raises 413 over MAX_CONTENT_LENGTH
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
