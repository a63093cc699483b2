"""Every error leaves as {"code", "status", "message", "errors"}; never a stack trace.

Domain errors (models.errors) become HTTP answers here, and only here: the status by the
kind of refusal, the message and field errors as the exception carries them.
"""

from __future__ import annotations

import logging

from amqp.exceptions import ConnectionError as AmqpConnectionError
from amqp.exceptions import IrrecoverableConnectionError, RecoverableConnectionError
from flask import Flask, Response, jsonify
from kombu.exceptions import OperationalError as KombuOperationalError
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.http import HTTP_STATUS_CODES

from models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthorized

log = logging.getLogger(__name__)

STATUS_BY_KIND: dict[type[DomainError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
}


def error_body(code: int, status: str, message: str, errors: dict | None = None) -> dict:
    return {"code": code, "status": status, "message": message, "errors": errors or {}}


def status_of(exc: DomainError) -> int | None:
    """The HTTP status of a domain error's kind; None for one of no kind (a bug: answered 500)."""
    return next((STATUS_BY_KIND[kind] for kind in type(exc).__mro__ if kind in STATUS_BY_KIND), None)


def _domain_error(exc: DomainError) -> Response:
    status = status_of(exc)
    if status is None:
        return _unexpected_error(exc)
    response = jsonify(error_body(status, HTTP_STATUS_CODES[status], exc.message, exc.errors))
    response.status_code = status
    return response


def _http_error(exc: HTTPException) -> Response:
    data = getattr(exc, "data", None) or {}
    errors = data.get("messages") or data.get("errors") or {}
    message = data.get("message") or exc.description or exc.name
    if exc.code == 422 and not data.get("message"):
        message = "The request is invalid; see errors."
    body = error_body(exc.code or 500, exc.name, message, errors)
    response = jsonify(body)
    response.status_code = exc.code or 500
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    if exc.code == 405 and exc.get_headers():
        response.headers.update({k: v for k, v in exc.get_headers() if k == "Allow"})
    return response


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unhandled error")
    return _http_error(InternalServerError(description="Internal error; it has been logged."))


# A backing service that is away for a moment (MongoDB, RabbitMQ) is a 503 the client may retry
# (with the same Idempotency-Key), not a 500: pymongo raises ConnectionFailure (AutoReconnect,
# ServerSelectionTimeoutError after serverSelectionTimeoutMS) and kombu/amqp raise
# OperationalError or socket errors. The body names no internal component.
UNAVAILABLE = (
    ConnectionFailure,
    KombuOperationalError,
    AmqpConnectionError,
    RecoverableConnectionError,
    IrrecoverableConnectionError,
    ConnectionError,
    TimeoutError,
)
RETRY_AFTER_S = 1


def _unavailable(exc: Exception) -> Response:
    log.warning("backing service unavailable: %r", exc)
    response = _http_error(ServiceUnavailable(description="The service is temporarily unavailable; retry shortly."))
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DomainError, _domain_error)
    for exc_type in UNAVAILABLE:
        app.register_error_handler(exc_type, _unavailable)
    app.register_error_handler(Exception, _unexpected_error)
