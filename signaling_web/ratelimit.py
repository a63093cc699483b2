"""Limits that protect the service from one caller: request rate and concurrent long polls.

Rate: a token bucket per caller (RATE_LIMIT_PER_S sustained, RATE_LIMIT_BURST at once), kept
in MongoDB (models.rate_limit.RateBucket) so that it holds across every web instance: a client
spreading its requests over several instances gets the same budget as against one. The caller
is the participant of a valid Bearer token, else a valid API key, else the client address (join
and create-session are anonymous). A token that does not verify counts against the address, so
random tokens do not buy fresh buckets. Every request under /api/v1/sessions counts once, when
it arrives; a long poll is one request however long it waits. A refusal is 429 with Retry-After.

A process remembers refusals until their Retry-After has passed and refuses again without
asking MongoDB: tat only moves forward, so that cache can never refuse a request the shared
bucket would allow, and a flood costs the database nothing while it lasts. Tokens are also
taken from the shared bucket a batch at a time (a tenth of the burst) and spent locally for up
to a second, so a busy caller costs one write per batch rather than per request; every request
allowed still spends a token of the shared bucket, and a caller that moves to another instance
leaves at most one batch unspent.

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
from flask import Flask, current_app, request
from flask_smorest import abort

from models.rate_limit import PollSlot, RateBucket
from settings import Settings
from signaling_web import auth

log = logging.getLogger(__name__)

LIMITED_PREFIX = "/api/v1/sessions"
SWEEP_EVERY_S = 60.0
POLL_LEASE_MARGIN_S = 30.0
POLL_RETRY_AFTER_S = 1
LOCAL_CACHE_MAX = 10000
# Tokens taken from the shared bucket in one write: a tenth of the burst, spent within a second.
BATCH_FRACTION = 10
BATCH_TTL_S = 1.0


class _Refusals:
    """Callers refused recently, until their Retry-After (per process, never shared)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float) -> float:
        until = self._until.get(key)
        if until is None:
            return 0.0
        if until <= now:
            with self._lock:
                self._until.pop(key, None)
            return 0.0
        return until - now

    def remember(self, key: str, until: float) -> None:
        with self._lock:
            if len(self._until) >= LOCAL_CACHE_MAX:
                now = time.time()
                for stale in [k for k, u in self._until.items() if u <= now]:
                    del self._until[stale]
                if len(self._until) >= LOCAL_CACHE_MAX:
                    self._until.clear()
            self._until[key] = until


class _LocalTokens:
    """Tokens this process took from a caller's shared bucket and has not spent yet."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def spend(self, key: str, now: float) -> bool:
        with self._lock:
            left, until = self._tokens.get(key, (0, 0.0))
            if left <= 0 or until <= now:
                self._tokens.pop(key, None)
                return False
            self._tokens[key] = (left - 1, until)
            return True

    def keep(self, key: str, count: int, until: float) -> None:
        with self._lock:
            if len(self._tokens) >= LOCAL_CACHE_MAX:
                self._tokens.clear()  # unspent tokens are only lost budget, never extra
            self._tokens[key] = (count, until)


_refusals = _Refusals()
_local_tokens = _LocalTokens()
_last_sweep = {"at": 0.0}


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


def _too_many(message: str, retry_after_s: float) -> NoReturn:
    seconds = max(1, math.ceil(retry_after_s))
    abort(429, message=message, headers={"Retry-After": str(seconds)})
    raise AssertionError("abort raises")  # flask_smorest.abort is untyped


def _sweep(now: float) -> None:
    if now - _last_sweep["at"] < SWEEP_EVERY_S:
        return
    _last_sweep["at"] = now
    try:
        RateBucket.sweep(now)
        PollSlot.sweep(now)
    except Exception:  # cleanup only; the next sweep tries again
        log.warning("sweeping rate-limit documents failed", exc_info=True)


def _before() -> None:
    settings = _settings()
    if settings.rate_limit_per_s <= 0 or request.method == "OPTIONS":
        return
    if not request.path.startswith(LIMITED_PREFIX):
        return
    now = time.time()
    key = caller_key()
    cached = _refusals.retry_after(key, now)
    if cached > 0:
        _too_many("Too many requests; slow down.", cached)
    if _local_tokens.spend(key, now):
        return
    batch = settings.rate_limit_burst // BATCH_FRACTION
    if batch > 1 and RateBucket.take(key, now, settings.rate_limit_per_s, settings.rate_limit_burst, batch).allowed:
        _local_tokens.keep(key, batch - 1, now + BATCH_TTL_S)
        return
    decision = RateBucket.take(key, now, settings.rate_limit_per_s, settings.rate_limit_burst)
    _sweep(now)
    if not decision.allowed:
        _refusals.remember(key, now + decision.retry_after_s)
        _too_many("Too many requests; slow down.", decision.retry_after_s)


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
    app.before_request(_before)
