"""Delivering webhook events (messaging.webhook_events) to the application's backend.

Runs only in the webhook worker (media_tasks.webhook_app), which consumes nothing but the webhook
queue: a receiver that hangs holds webhook threads, never a signaling worker's.

One attempt is one POST of the event's exact body, signed, with WEBHOOK_TIMEOUT_S to connect and
to answer. A 2xx is delivered; anything else is retried 1, 2, 4 ... seconds later (at most
WEBHOOK_RETRY_MAX_DELAY_S apart) through Celery's native delayed delivery, a ladder of broker queues
with per-queue TTLs: the waiting event sits on the broker, not unacknowledged in a worker (where
RabbitMQ's consumer timeout would take it back). Once an attempt fails WEBHOOK_RETRY_WINDOW_S or
more after the event happened, the event is dropped with an ERROR log and
`signaling_webhook_failures_total`.

Receivers are isolated from each other in a process: one that failed rests until its retry is due
(its other events are put back without an attempt), and none holds more than its share of the
threads (WEBHOOK_CONCURRENCY / number of receivers; the surplus is put back a second later). So a
dead or hanging receiver costs a thread per probe, and the others keep theirs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from prometheus_client import Counter

from messaging.webhook_events import EVENT_ID_HEADER, SIGNATURE_HEADER, signature
from settings import Settings

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "signaling_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered (2xx), retried (failed, tried again later), "
    "deferred (not tried: its receiver is resting or busy), dropped (failed after the retry window)",
    ["outcome"],
)
FAILURES = Counter("signaling_webhook_failures", "Webhook events dropped after their retry window")

USER_AGENT = "kurento-signaling-webhooks/1"


def retry_delay(settings: Settings, retries: int) -> int:
    """Seconds before the next try of an event tried `retries + 1` times: 1, 2, 4 ... capped."""
    return max(1, min(settings.webhook_retry_max_delay_s, 2 ** min(retries, 30)))


@dataclass
class _Receivers:
    """Per receiver URL, in this process: resting until when (after a failure), attempts in flight.

    A receiver that failed rests; when its rest is over, one attempt probes it while the others
    wait (half-open), so a dead receiver holds one thread per rest period, not a share of them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    resting_until: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)

    def take(self, settings: Settings, url: str, now: float) -> int:
        """0 when this attempt may go ahead, else the seconds to put it back for."""
        share = max(1, settings.webhook_concurrency // max(1, len(settings.webhook_urls)))
        with self.lock:
            resting_until = self.resting_until.get(url)
            if resting_until is not None:
                if resting_until > now:
                    return max(1, math.ceil(resting_until - now))
                # The probe: the rest of its events wait for its answer.
                self.resting_until[url] = now + settings.webhook_timeout_s + 1
            elif self.in_flight.get(url, 0) >= share:
                return 1
            self.in_flight[url] = self.in_flight.get(url, 0) + 1
            return 0

    def give_back(self, url: str, failed: bool, rest_s: float) -> None:
        with self.lock:
            self.in_flight[url] -= 1
            if failed:
                self.resting_until[url] = time.time() + rest_s
            else:
                self.resting_until.pop(url, None)


_receivers = _Receivers()


def shown(url: str) -> str:
    """A receiver URL for logs: without credentials or query, which may carry a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def post(settings: Settings, url: str, event_id: str, body: str) -> str | None:
    """One attempt; None when the receiver took it (2xx), else why not."""
    payload = body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        SIGNATURE_HEADER: signature(settings.webhook_secret, payload),
    }
    timeout = settings.webhook_timeout_s
    try:
        with requests.post(url, data=payload, headers=headers, timeout=(timeout, timeout), stream=True) as response:
            if 200 <= response.status_code < 300:
                return None
            return f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        return type(exc).__name__


def deliver(settings: Settings, url: str, event_id: str, body: str, emitted_at: float, retries: int) -> int | None:
    """Tries the event once; returns the seconds before its next try, None when done with it
    (delivered, or dropped after the retry window)."""
    now = time.time()
    delay = retry_delay(settings, retries)
    wait = _receivers.take(settings, url, now)
    if wait:
        if now - emitted_at >= settings.webhook_retry_window_s:
            _drop(settings, url, event_id, "its receiver kept failing")
            return None
        DELIVERIES.labels("deferred").inc()
        return wait
    failure: str | None = "not tried"
    try:
        failure = post(settings, url, event_id, body)
    finally:
        _receivers.give_back(url, failed=failure is not None, rest_s=delay)
    if failure is None:
        DELIVERIES.labels("delivered").inc()
        return None
    if time.time() - emitted_at >= settings.webhook_retry_window_s:
        _drop(settings, url, event_id, failure)
        return None
    DELIVERIES.labels("retried").inc()
    log.warning("webhook event %s to %s failed (%s); retrying in %d s", event_id, shown(url), failure, delay)
    return delay


def _drop(settings: Settings, url: str, event_id: str, failure: str) -> None:
    DELIVERIES.labels("dropped").inc()
    FAILURES.inc()
    window = settings.webhook_retry_window_s
    log.error(
        "webhook event %s to %s dropped: %s, still failing %d s after the event", event_id, shown(url), failure, window
    )
