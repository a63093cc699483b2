"""Client drops: a media connection that goes bad is reported only if it stays bad.

ICE and connection state flap on real networks; telling the participant at the first
DISCONNECTED would make clients rejoin for nothing. So a bad state starts a debounce clock
(stored on the Endpoint document, so any worker may see it) and a countdown task; when
the task fires, `connectionFailed` goes out only if no recovery was recorded meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from messaging import messages
from messaging.publisher import get_publisher
from models import PUBLISH, Endpoint, clock
from settings import Settings

log = logging.getLogger(__name__)

WATCHED_EVENTS = ("IceComponentStateChanged", "ConnectionStateChanged", "MediaFlowInStateChanged")


def watched_events(stream: str) -> tuple[str, ...]:
    """What to subscribe for a stream: a subscriber endpoint only sends, nothing flows in by design."""
    return WATCHED_EVENTS if stream == PUBLISH else WATCHED_EVENTS[:2]


_BAD = {"FAILED", "DISCONNECTED", "NOT_FLOWING"}
_GOOD = {"CONNECTED", "READY", "FLOWING"}


@dataclass
class Watch:
    """One endpoint's connection as the process relaying its events knows it.

    Only this endpoint's events start its debounce clock (Endpoint.mark_failing is conditional on
    it being the stored one), so the relay knows when the clock may run: a good state costs a
    write only then, not at every ICE, connection and media-flow event of a healthy call.
    """

    endpoint: str  # its stored reference, "<kms url>#<object id>"
    maybe_failing: bool = False  # a fresh endpoint is stored healthy (Endpoint.claim_kurento)


def _state(event_type: str, data: dict[str, Any]) -> str | None:
    return data.get("newState") if event_type == "ConnectionStateChanged" else data.get("state")


def on_state_event(
    settings: Settings,
    session_id: str,
    participant_id: str,
    stream: str,
    event_type: str,
    data: dict[str, Any],
    schedule_check: Callable[[float], None],
    watch: Watch | None = None,
) -> None:
    if event_type == "MediaFlowInStateChanged" and stream != PUBLISH:
        return  # a subscriber endpoint only sends; nothing flows in by design
    state = _state(event_type, data)
    endpoint = watch.endpoint if watch is not None else None
    if state in _BAD:
        if watch is not None:
            watch.maybe_failing = True
        if Endpoint.mark_failing(participant_id, stream, clock.now(), endpoint):
            schedule_check(settings.connection_debounce_s)
    elif state in _GOOD and (watch is None or watch.maybe_failing):
        Endpoint.mark_recovered(participant_id, stream, endpoint)
        if watch is not None:
            watch.maybe_failing = False


def check_connection(
    settings: Settings,
    session_id: str,
    participant_id: str,
    stream: str,
    schedule_check: Callable[[float], None] | None = None,
) -> bool:
    """Runs when the debounce period is over; True if the participant was told.

    The countdown runs on the clocks of the process that scheduled it and of the one that runs it
    (Celery's ETA), the debounce clock on the database's (models.clock): a check that comes early
    for a failure still running schedules itself again for the rest of the period."""
    now = clock.now()
    # A little slack: the countdown may fire a few milliseconds early.
    if Endpoint.claim_failure_report(participant_id, stream, now - settings.connection_debounce_s + 0.25):
        log.info("connection of %s/%s did not recover; telling the participant", participant_id, stream)
        get_publisher(settings).to_participant(session_id, participant_id, messages.connection_failed(stream))
        return True
    failing_since = Endpoint.failing_since(participant_id, stream)
    if schedule_check is not None and failing_since:
        schedule_check(max(0.25, failing_since + settings.connection_debounce_s - now))
    return False
