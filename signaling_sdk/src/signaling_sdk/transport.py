"""One HTTP exchange with the service, with the retries that are safe (standard library only).

Every POST carries an Idempotency-Key (the caller's, or a fresh one per call): the service answers a
repeat with the first answer and does nothing twice, so a POST is retried like a GET. What is
retried: no answer at all (refused, reset, timed out), 503 (database or broker away for a moment;
nothing was done) and 429 (refused before anything was done), waiting the answer's Retry-After when
it gives one, else an exponential backoff. A retry whose first attempt is still running on the
service gets 409 "still being processed" for its key, and waits too.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from signaling_sdk.errors import ERRORS_BY_CODE, ApiError, TransportError

IDEMPOTENCY_HEADER = "Idempotency-Key"
API_KEY_HEADER = "X-API-Key"
RETRIED_STATUSES = frozenset({429, 503})
# The service's 409 for a key whose first request has not finished (signaling_web/idempotency.py).
IN_PROGRESS_MARKER = "still being processed"
# The service's own Retry-After is a second or two; a larger one (a proxy's) is not worth blocking on.
MAX_RETRY_AFTER_S = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a request is tried again, and how long to wait before each try."""

    retries: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        # Full jitter: clients that failed together do not come back together.
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Message
    body: bytes


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        retry: RetryPolicy,
        user_agent: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self.user_agent = user_agent
        self._sleep = sleep
        self._opener = urllib.request.build_opener()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """The decoded JSON of a 2xx answer ({} for an empty one); ApiError for any other status,
        TransportError when no answer came within the retries."""
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.api_key is not None:
            headers[API_KEY_HEADER] = self.api_key
        data = None
        if method == "POST":
            headers[IDEMPOTENCY_HEADER] = idempotency_key or uuid.uuid4().hex
            data = json.dumps(body or {}, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retry.retries + 1):
            last = attempt == self.retry.retries
            try:
                answer = self._send(method, url, headers, data)
            except (OSError, http.client.HTTPException) as exc:
                if last:
                    raise TransportError(f"{method} {url}: no answer ({exc})") from exc
                self._sleep(self.retry.delay(attempt, None))
                continue
            if 200 <= answer.status < 300:
                return json.loads(answer.body) if answer.body.strip() else {}
            error = _api_error(method, url, answer)
            if last or not _retried(error, attempt):
                raise error
            self._sleep(self.retry.delay(attempt, error.retry_after))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None) -> _Answer:
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:  # a non-2xx answer: an answer all the same
            with exc:
                return _Answer(exc.code, exc.headers, exc.read())


def _retried(error: ApiError, attempt: int) -> bool:
    if error.code in RETRIED_STATUSES:
        return True
    # Only our own earlier attempt (which got no answer) can be the request still in progress.
    return attempt > 0 and error.code == 409 and IN_PROGRESS_MARKER in error.message


def _api_error(method: str, url: str, answer: _Answer) -> ApiError:
    kind = ERRORS_BY_CODE.get(answer.status, ApiError)
    retry_after = _retry_after(answer.headers.get("Retry-After"))
    try:
        shape = json.loads(answer.body)
    except ValueError:
        shape = None
    if isinstance(shape, dict) and isinstance(shape.get("message"), str):
        errors = shape.get("errors")
        return kind(
            answer.status,
            str(shape.get("status") or http.client.responses.get(answer.status, "")),
            shape["message"],
            errors if isinstance(errors, dict) else {},
            method=method,
            url=url,
            retry_after=retry_after,
        )
    text = answer.body[:200].decode("utf-8", "replace").strip()
    reason = http.client.responses.get(answer.status, "Error")
    return kind(answer.status, reason, text or reason, {}, method=method, url=url, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: not what the service sends; the backoff applies
