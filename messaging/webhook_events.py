"""Webhook events for the application's backend: what they say, how they are signed, and emitting them.

An event is `{id, type, session_id, participant_id?, at, data}` (DESIGN.md, "Webhooks"), POSTed to
every WEBHOOK_URLS receiver by the webhook worker (media_tasks.webhooks). Emitting one is one
`media.deliver_webhook` task per receiver on the webhook queue, never a shard queue, so the
signaling workers only publish; with WEBHOOK_URLS empty nothing at all happens.

Most events mirror a message the workers already send (`relay`, called by messaging.publisher for
every message it publishes): participantJoined, participantLeft, streamPublished,
streamUnpublished, mediaServerLost and connectionFailed carry that message's fields as `data`.
sessionCreated and sessionClosed (with the close's reason) are emitted by the session lifecycle;
recordingStarted and recordingStopped by recording (media_tasks.recordings), with the recording's
`{recording_id, name, profile, uri}` (and `state`, `reason` once stopped) and the recorded participant.

The event id is stable: inside a task it derives, like message ids, from the task's seed and the
event's place among its publishes (messaging.rerun_identity), so a redelivered or re-run task emits
its events under the same ids, and every retry of a delivery sends the same body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from messaging import rerun_identity
from settings import Settings

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

# Messages to participants whose publication is also an event for the backend.
MIRRORED: frozenset[str] = frozenset(
    {
        "participantJoined",
        "participantLeft",
        "streamPublished",
        "streamUnpublished",
        "mediaServerLost",
        "connectionFailed",
    }
)


class WebhookQueue(Protocol):
    """Where events go: media_tasks.dispatch.TaskQueue, registered by that module (`use_queue`),
    since messaging sits below the task layer."""

    def deliver_webhook(self, url: str, event_id: str, body: str, emitted_at: float) -> None: ...


_queue_for: Callable[[Settings], WebhookQueue] | None = None


def use_queue(queue_for: Callable[[Settings], WebhookQueue]) -> None:
    global _queue_for
    _queue_for = queue_for


SIGNATURE_HEADER = "X-Signaling-Signature"
EVENT_ID_HEADER = "X-Signaling-Event-Id"


def signature(secret: str, body: bytes) -> str:
    """The `X-Signaling-Signature` value of a body: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver checks (in constant time) before trusting a body."""
    return hmac.compare_digest(signature(secret, body), header)


def event_body(
    event_id: str, type_: EventType, session_id: str, participant_id: str | None, data: Mapping[str, Any], at: float
) -> str:
    """The exact body sent (and signed), the same bytes on every retry."""
    event: dict[str, Any] = {"id": event_id, "type": type_, "session_id": session_id}
    if participant_id is not None:
        event["participant_id"] = participant_id
    event["at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event["data"] = dict(data)
    return json.dumps(event, separators=(",", ":"))


def emit(
    settings: Settings,
    type_: EventType,
    session_id: str,
    participant_id: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Queues the event for every receiver: one confirmed publish per WEBHOOK_URLS entry, none without."""
    if not settings.webhook_urls:
        return
    data = data or {}
    # Everything but `at`: a re-run happens later, and its copy must keep the id.
    identity = json.dumps([session_id, participant_id, data], separators=(",", ":"), sort_keys=True)
    event_id = rerun_identity.message_id("webhook", type_, identity)
    now = time.time()
    body = event_body(event_id, type_, session_id, participant_id, data, now)
    if _queue_for is None:
        raise RuntimeError("WEBHOOK_URLS is set but nothing registered a queue for webhook events")
    queue = _queue_for(settings)
    for url in settings.webhook_urls:
        queue.deliver_webhook(url=url, event_id=event_id, body=body, emitted_at=now)


def relay(settings: Settings, session_id: str, recipient: str | None, message: Mapping[str, Any]) -> None:
    """The event a published message stands for, if any: its fields but `type` and `participant_id`
    are the event's `data`; a message to one participant (connectionFailed) is about that one."""
    if not settings.webhook_urls or message["type"] not in MIRRORED:
        return
    data = {key: value for key, value in message.items() if key not in ("type", "participant_id")}
    participant_id = message.get("participant_id", recipient)
    emit(settings, message["type"], session_id, participant_id, data)


def session_created(settings: Settings, session_id: str) -> None:
    emit(settings, "sessionCreated", session_id)


def session_closed(settings: Settings, session_id: str, reason: str) -> None:
    """`reason`: "closed" (DELETE) or "empty" (EMPTY_SESSION_TIMEOUT_S)."""
    emit(settings, "sessionClosed", session_id, data={"reason": reason})


def recording_started(settings: Settings, session_id: str, participant_id: str | None, data: Mapping[str, Any]) -> None:
    """The recorder writes media (`data`: recording_id, name, profile, uri)."""
    emit(settings, "recordingStarted", session_id, participant_id, data)


def recording_stopped(settings: Settings, session_id: str, participant_id: str | None, data: Mapping[str, Any]) -> None:
    """The recording ended (`data`: recording_id, name, profile, uri, state, reason)."""
    emit(settings, "recordingStopped", session_id, participant_id, data)
