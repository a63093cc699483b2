"""CORS: browsers on the origins of CORS_ORIGINS may call the API; no other origin may.

An allowed Origin is echoed in Access-Control-Allow-Origin (with `Vary: Origin`) on every
response, errors included, and a preflight (OPTIONS with Access-Control-Request-Method) of an
existing route is answered 204 with the route's methods and the headers the API reads. Any
other origin gets no CORS header at all, so the browser keeps the response from the page.
`*` in CORS_ORIGINS allows every origin and is sent as a literal `*`. Credentials (cookies)
are never allowed: the API authenticates with headers (Authorization, X-API-Key), so
Access-Control-Allow-Credentials is never sent, and a wildcard never goes with credentials.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-API-Key")
EXPOSED_HEADERS = ("Retry-After", "Idempotent-Replayed")
PREFLIGHT_MAX_AGE_S = 600
_NOT_PREFLIGHTED = {"HEAD", "OPTIONS"}


def _allowed_origin() -> str | None:
    """What to send as Access-Control-Allow-Origin for this request, or None."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = current_app.extensions["signaling_settings"].cors_origins
    if origin in allowed:
        return origin
    if "*" in allowed:
        return "*"
    return None


def _preflight() -> Response | None:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = _allowed_origin()
    if origin is None or request.url_rule is None:
        return None  # Flask's own answer (Allow header, or 404), without any CORS header
    methods = sorted(m for m in (request.url_rule.methods or ()) if m not in _NOT_PREFLIGHTED)
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


def _after(response: Response) -> Response:
    if current_app.extensions["signaling_settings"].cors_origins:
        response.vary.add("Origin")
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    return response


def init_cors(app: Flask) -> None:
    app.before_request(_preflight)
    app.after_request(_after)
