"""Idempotency-Key on any POST: a repeat returns the first response and does nothing twice.

Records live in MongoDB, so the repeat may reach any web instance. The key is scoped to the
caller's credentials and the path, so one client cannot replay another's response. The record
also keeps a fingerprint of the body (canonical JSON, so key order and spacing do not matter):
the same key with a different body is refused with 422 and does nothing, because answering it
with the first response would pretend that a different request was done (and would hand one
joiner's token to another), and doing it would break the promise that a key's work happens once.
A repeat while the first request is still running gets 409.

Records are written before authentication and hold the first response, which may carry a
participant token (a join's answer). So the stored body is sealed: encrypted and authenticated
with a key derived from SECRET_KEY and the client's raw Idempotency-Key, which is never stored
(the record's id is a hash of it). A reader of the database alone cannot open a stored answer.
The cipher is AES-256-GCM from the `cryptography` package; the nonce is random per record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, Response, current_app, g, has_request_context, request
from flask_smorest import abort

from messaging.rerun_identity import enqueue_root_id
from models import IdempotencyRecord
from signaling_web.extensions import strict_json_loads

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
SEALED_PREFIX = "sealed2:"
_NONCE_BYTES = 12  # GCM's standard nonce


def _derive(secret_key: str, raw_key: str) -> bytes:
    """A 256-bit key of its own per (SECRET_KEY, Idempotency-Key)."""
    return hmac.new(secret_key.encode(), b"idempotency-seal\0" + raw_key.encode(), hashlib.sha256).digest()


def seal(secret_key: str, raw_key: str, body: str) -> str:
    """The body encrypted and authenticated under (SECRET_KEY, raw Idempotency-Key)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    cipher = AESGCM(_derive(secret_key, raw_key)).encrypt(nonce, body.encode(), None)
    return SEALED_PREFIX + base64.b64encode(nonce + cipher).decode()


def unseal(secret_key: str, raw_key: str, sealed: str) -> str | None:
    """The body `seal` sealed, or None when it cannot be opened with these keys."""
    if not sealed.startswith(SEALED_PREFIX):
        return None
    try:
        raw = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
        return AESGCM(_derive(secret_key, raw_key)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode()
    except (ValueError, InvalidTag):
        return None


def _secret_key() -> str:
    return current_app.extensions["signaling_settings"].secret_key


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
        g.idempotency_raw_key = key  # request memory only: what opens the stored answer
        return None
    if existing.fingerprint != fingerprint:
        abort(
            422,
            message=f"This {HEADER} was already used for a request with a different body; "
            "send a new request with a new key.",
        )
    if existing.status_code is None:
        abort(409, message=f"A request with this {HEADER} is still being processed.")
    body = unseal(_secret_key(), key, existing.body or "")
    if body is None:
        # Sealed under another SECRET_KEY (rotated since): its tokens would not work either.
        abort(409, message=f"The answer stored under this {HEADER} can no longer be read; send a new request.")
    replay = Response(body, status=existing.status_code, mimetype="application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def _after(response: Response) -> Response:
    scoped = g.pop("idempotency_key", None)
    raw_key = g.pop("idempotency_raw_key", "")
    if scoped is None:
        return response
    if response.status_code >= 500:
        IdempotencyRecord.abandon(scoped)  # nothing was promised; let the client retry
    else:
        sealed = seal(_secret_key(), raw_key, response.get_data(as_text=True))
        IdempotencyRecord.complete(scoped, response.status_code, sealed)
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
