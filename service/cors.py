"""CORS for browser CDS Clients (service-contract.md §6, §8; checklist §1.L).

* Every preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``), on any path, is
  answered 204 before routing and before authentication (browsers never send a token on a preflight).
* Every real response, errors included (401, 404, 405, 412, 413, 500 …), carries
  ``Access-Control-Allow-Origin``: ``*`` when ``HCC_CDS_CORS_ORIGINS`` is ``*``, otherwise the request's
  ``Origin`` echoed back when it is on the list (with ``Vary: Origin``); a disallowed origin gets none.
* ``Access-Control-Allow-Headers`` names ``Authorization`` explicitly (a ``*`` would not cover it).
* No credentials are ever allowed (the JWT travels in a header, not a cookie).

The headers are set with ``headers[...] =``, so a blueprint that also sets them yields no duplicates, and
this module's policy is the one that applies.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept"
EXPOSE_HEADERS = "X-Request-ID, Location, Content-Location"
MAX_AGE = "600"
_CORS_HEADERS = (
    "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
    "Access-Control-Max-Age", "Access-Control-Expose-Headers",
)


def allowed_origin(origin: str | None) -> str | None:
    """The value for ``Access-Control-Allow-Origin``, or None when the origin is not allowed."""
    origins = current_app.config["HCC_CDS"].cors_origins
    if "*" in origins:
        return "*"
    if origin and origin in origins:
        return origin
    return None


def _apply(response: Response, *, preflight: bool) -> Response:
    origins = current_app.config["HCC_CDS"].cors_origins
    value = allowed_origin(request.headers.get("Origin"))
    if "*" not in origins:
        response.vary.add("Origin")
    response.headers.pop("Access-Control-Allow-Credentials", None)
    if value is None:
        for name in _CORS_HEADERS:
            response.headers.pop(name, None)
        return response
    response.headers["Access-Control-Allow-Origin"] = value
    if preflight:
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE
    else:
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response


def _is_preflight() -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def init_app(app: Flask) -> None:
    def _preflight() -> Response | None:
        if not _is_preflight():
            return None
        response = Response(status=204)
        response.headers.pop("Content-Type", None)
        return _apply(response, preflight=True)

    # Answer preflights before any other app-level before_request hook (e.g. one that authenticates),
    # right after the logging hook that stamps the request id.
    funcs = app.before_request_funcs.setdefault(None, [])
    position = next((i + 1 for i, f in reversed(list(enumerate(funcs)))
                     if getattr(f, "__module__", "") == "service.logs"), 0)
    funcs.insert(position, _preflight)

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        if _is_preflight():
            return response  # already complete (answered above)
        return _apply(response, preflight=False)
