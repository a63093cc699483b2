"""Webhook requests from the service (docs/webhooks.md): check the signature, read the event.

The service signs the raw body: `X-Signaling-Signature: sha256=<hex HMAC-SHA256(WEBHOOK_SECRET, body)>`.
Verify the bytes exactly as received, before any JSON parsing (a re-serialised body is other bytes).
Deliveries are at least once: deduplicate on `WebhookEvent.id`, and order by `at`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from signaling_sdk.errors import WebhookSignatureError

SIGNATURE_HEADER = "X-Signaling-Signature"
EVENT_ID_HEADER = "X-Signaling-Event-Id"

EventType = Literal[
    "sessionCreated",
    "sessionClosed",
    "participantJoined",
    "participantLeft",
    "streamPublished",
    "streamUnpublished",
    "recordingStarted",
    "recordingStopped",
    "mediaServerLost",
    "connectionFailed",
]


class Headers(Protocol):
    """A request's headers: a dict, or a web framework's case-insensitive headers (Flask, Django, ...)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    """The same on every copy of one event: deduplicate on it."""
    type: EventType | str
    """One of EventType; a type added to the service later comes as its string."""
    session_id: str
    at: datetime
    data: dict[str, Any]
    participant_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def signature(secret: str, raw_body: bytes) -> str:
    """The `X-Signaling-Signature` value the service sends with this body (also handy to test a receiver)."""
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, raw_body: bytes, signature_header: str | None) -> bool:
    """Whether the header is the body's signature under `secret`; compared in constant time."""
    if not secret:
        raise ValueError("an empty webhook secret verifies nothing; pass the service's WEBHOOK_SECRET")
    if not signature_header:
        return False
    return hmac.compare_digest(signature(secret, raw_body).encode(), signature_header.strip().encode())


def parse_event(raw_body: bytes | str) -> WebhookEvent:
    """The event a webhook body carries, WITHOUT checking its signature (see `verify_event`)."""
    body = json.loads(raw_body)
    if not isinstance(body, dict):
        raise ValueError("a webhook body is a JSON object")
    data = body.get("data") or {}
    return WebhookEvent(
        id=body["id"],
        type=body["type"],
        session_id=body["session_id"],
        at=datetime.fromisoformat(body["at"]),
        data=data if isinstance(data, dict) else {},
        participant_id=body.get("participant_id"),
        raw=body,
    )


def verify_event(secret: str, raw_body: bytes, headers: Headers | str | None) -> WebhookEvent:
    """The event of a webhook request whose signature checks out; WebhookSignatureError otherwise.

    `headers` is the request's headers (a framework's, or a dict with any case of the names) or the
    `X-Signaling-Signature` value itself. In Flask: `verify_event(SECRET, request.get_data(), request.headers)`."""
    header = headers if isinstance(headers, str) or headers is None else _header(headers, SIGNATURE_HEADER)
    if not verify_signature(secret, raw_body, header):
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} is missing or does not match the body")
    return parse_event(raw_body)


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):  # a plain dict is case-sensitive
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return value
