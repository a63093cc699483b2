"""Idempotency-Key on any POST: a repeat returns the first response and does nothing twice.

Records live in MongoDB, so the repeat may reach any web instance. The key is scoped to the
caller's credentials and the path, so one client cannot replay another's response. The record
also keeps a fingerprint of the body (canonical JSON, so key order and spacing do not matter):
the same key with a different body is refused with 422 and does nothing, because answering it
with the first response would pretend that a different request was done (and would hand one
joiner's token to another), and doing it would break the promise that a key's work happens once.
A repeat while the first request is still running gets 409.
"""

from __future__ import annotations

import hashlib
import json

from flask import Flask, Response, g, has_request_context, request
from flask_smorest import abort

from messaging.rerun_identity import enqueue_root_id
from models import IdempotencyRecord
from signaling_web.extensions import strict_json_loads

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _body_fingerprint() -> str:
    """The request body's hash, so the key alone never replays an answer to a different request
    (a join with another join_token must not receive the first joiner's participant token)."""
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 before anything is stored
    try:
        canonical = json.dumps(strict_json_loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()


def _scoped_key(key: str) -> str:
    caller = request.headers.get("Authorization", "") + "\n" + request.headers.get("X-API-Key", "")
    material = "\n".join((request.method, request.path, key, caller))
    return hashlib.sha256(material.encode()).hexdigest()


def _before() -> Response | None:
    if request.method != "POST" or HEADER not in request.headers:
        return None
    key = request.headers[HEADER]
    if not key or len(key) > MAX_KEY_LENGTH:
        abort(400, message=f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters.")
    scoped = _scoped_key(key)
    fingerprint = _body_fingerprint()
    existing = IdempotencyRecord.claim(scoped, fingerprint=fingerprint)
    if existing is None:
        g.idempotency_key = scoped
        return None
    if existing.fingerprint != fingerprint:
        abort(
            422,
            message=f"This {HEADER} was already used for a request with a different body; "
            "send a new request with a new key.",
        )
    if existing.status_code is None:
        abort(409, message=f"A request with this {HEADER} is still being processed.")
    replay = Response(existing.body, status=existing.status_code, mimetype="application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def _after(response: Response) -> Response:
    scoped = g.pop("idempotency_key", None)
    if scoped is None:
        return response
    if response.status_code >= 500:
        IdempotencyRecord.abandon(scoped)  # nothing was promised; let the client retry
    else:
        IdempotencyRecord.complete(scoped, response.status_code, response.get_data(as_text=True))
    return response


def _teardown(_exc: BaseException | None) -> None:
    scoped = g.pop("idempotency_key", None)
    if scoped is not None:
        IdempotencyRecord.abandon(scoped)


def next_root_id() -> str | None:
    """The root id of the next task this request enqueues: derived from its Idempotency-Key and the
    task's place among the request's enqueues, so a repeat of the request enqueues tasks with the
    same roots (messaging.rerun_identity); None without a key (Celery's own ids)."""
    key = g.get("idempotency_key") if has_request_context() else None
    if key is None:
        return None
    index = g.get("tasks_enqueued", 0)
    g.tasks_enqueued = index + 1
    return enqueue_root_id(key, index)


def init_idempotency(app: Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
