"""Limits that protect the service from one caller: request rate and concurrent long polls.

Rate: Flask-Limiter's moving window, kept in this web process's memory: at most
RATE_LIMIT_BURST requests of one caller in any window of RATE_LIMIT_BURST / RATE_LIMIT_PER_S
seconds (whole seconds, at least one: a rate above the burst allows one second of it), so the
burst at once and the rate sustained. The caller is the participant of a valid Bearer token,
else a valid API key, else the client address (join and create-session are anonymous; the
address is the peer's: no proxy header is trusted). A token that does not verify counts against
the address, so random tokens do not buy fresh windows. Every request under /api/v1/sessions
counts once, when it arrives; a long poll is one request however long it waits. A refusal is
429 in the error shape with Retry-After.

The count is per web process, never shared, so it costs no database or network operation. With
N web processes (gunicorn workers times pods) a caller that spreads its requests over all of
them gets up to N times the budget; one client's keep-alive connection stays on one process, so
an ordinary client meets the limit as configured. It protects each process from one caller's
flood, not the deployment from a distributed one.

Polls: at most MAX_POLLS_PER_PARTICIPANT polls of one participant run at once across all web
instances. One of them is the poll holding the participant's poll lease (messaging.mailbox),
which costs nothing more; every other one must hold a leased slot (models.rate_limit.PollSlot)
for as long as it runs, so there are MAX_POLLS_PER_PARTICIPANT - 1 slots, and a poll that finds
them all held is refused with 429 at once. A client polling one request at a time, the normal
case, never touches a slot. A slot's lease covers the longest poll plus a margin, so a web
instance killed in the middle of a poll blocks that slot for that long at most.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import NoReturn

import flask
from flask import Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_smorest import abort
from limits.storage import MemoryStorage

from models.rate_limit import PollSlot
from settings import Settings
from signaling_web import auth
from signaling_web.errors import error_body

log = logging.getLogger(__name__)

LIMITED_PREFIX = "/api/v1/sessions"
SWEEP_EVERY_S = 60.0
POLL_LEASE_MARGIN_S = 30.0
POLL_RETRY_AFTER_S = 1
EXPIRE_EVERY_S = 5.0
REFUSAL = "Too many requests; slow down."


class _QuietMemoryStorage(MemoryStorage):
    """limits' in-memory storage, with its expiry pass every EXPIRE_EVERY_S rather than 10 ms after
    every hit: that pass walks every caller's window, so with thousands of idle pollers the stock
    timer would wake up to 100 times a second. Correctness does not need it: a window is checked
    against the clock on every hit; the pass only frees memory (a window holds at most the burst)."""

    STORAGE_SCHEME = ["signaling-memory"]

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802  # overrides the name-mangled hook
        if not self.timer.is_alive():
            expire = self._MemoryStorage__expire_events  # type: ignore[attr-defined]  # mypy does not mangle
            self.timer = threading.Timer(EXPIRE_EVERY_S, expire)
            self.timer.daemon = True  # never holds up the process's exit
            self.timer.start()


def _settings() -> Settings:
    return current_app.extensions["signaling_settings"]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:24]


def caller_key() -> str:
    """Whom this request counts against. Never a secret itself: ids and digests only."""
    principal = auth.verified_participant()
    if principal is not None:
        return f"p:{principal.participant_id}"
    if auth.has_api_key():
        return f"k:{_digest(request.headers['X-API-Key'])}"
    return f"ip:{request.remote_addr or 'unknown'}"


def limit_for(settings: Settings) -> str:
    """RATE_LIMIT_BURST per burst / rate seconds, as Flask-Limiter's limit string."""
    window_s = max(1, round(settings.rate_limit_burst / settings.rate_limit_per_s))
    amount = max(1, settings.rate_limit_burst, round(settings.rate_limit_per_s * window_s))
    return f"{amount} per {window_s} second"


def _not_limited() -> bool:
    return request.method == "OPTIONS" or not request.path.startswith(LIMITED_PREFIX)


def _too_many(message: str, retry_after_s: float) -> NoReturn:
    seconds = max(1, math.ceil(retry_after_s))
    abort(429, message=message, headers={"Retry-After": str(seconds)})
    raise AssertionError("abort raises")  # flask_smorest.abort is untyped


def _refused(limiter: Limiter) -> Response:
    breached = limiter.current_limit
    retry_after_s = breached.window[0] - time.time() if breached is not None else 1.0
    response = jsonify(error_body(429, "Too Many Requests", REFUSAL))
    response.status_code = 429
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response


_last_sweep = {"at": 0.0}


def _sweep_slots(now: float) -> None:
    if now - _last_sweep["at"] < SWEEP_EVERY_S:
        return
    _last_sweep["at"] = now
    try:
        PollSlot.sweep(now)
    except Exception:  # cleanup only; the next sweep tries again
        log.warning("sweeping poll slots failed", exc_info=True)


@contextlib.contextmanager
def poll_slot(participant_id: str, wait_s: float) -> Iterator[None]:
    """Holds one of the participant's poll slots while a poll runs beside the lease holder, or answers 429."""
    settings = _settings()
    slots = settings.max_polls_per_participant - 1  # the lease holder needs none
    if settings.max_polls_per_participant <= 0:
        yield
        return
    owner = uuid.uuid4().hex
    now = time.time()
    slot = PollSlot.acquire(participant_id, slots, owner, now, now + wait_s + POLL_LEASE_MARGIN_S) if slots else None
    _sweep_slots(now)
    if slot is None:
        total = settings.max_polls_per_participant
        _too_many(f"At most {total} polls of one participant may run at once.", POLL_RETRY_AFTER_S)
    try:
        yield
    except BaseException:
        PollSlot.release(slot, owner)
        raise
    # Freed once the response is on its way: the client waits for its messages, not for this.
    # (A client that polls again at once finds its other slot free.)
    flask.after_this_request(lambda response: _release_after_sending(response, slot, owner))


def _release_after_sending(response: flask.Response, slot: str, owner: str) -> flask.Response:
    def release() -> None:
        try:
            PollSlot.release(slot, owner)
        except Exception:  # the slot's lease frees it anyway
            log.warning("releasing poll slot %s failed", slot, exc_info=True)

    response.call_on_close(release)
    return response


def init_rate_limits(app: Flask) -> None:
    settings: Settings = app.extensions["signaling_settings"]
    if settings.rate_limit_per_s <= 0:
        return
    limiter = Limiter(
        caller_key,
        application_limits=[limit_for(settings)],
        strategy="moving-window",
        storage_uri="signaling-memory://",
        # Unrouted paths under the prefix count too (Flask-Limiter exempts requests without an endpoint).
        request_identifier=lambda: request.endpoint or "unrouted",
        headers_enabled=False,
    )
    limiter.request_filter(_not_limited)
    limiter.init_app(app)
    # Flask-Limiter logs every refusal at INFO: a flood would cost a log line per request.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    app.register_error_handler(RateLimitExceeded, lambda _exc: _refused(limiter))
