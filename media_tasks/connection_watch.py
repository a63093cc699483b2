"""Client drops: a media connection that goes bad is reported only if it stays bad.

ICE and connection state flap on real networks; telling the participant at the first
DISCONNECTED would make clients rejoin for nothing. So a bad state starts a debounce clock
(stored on the Endpoint document, so any worker may see it) and a countdown task; when
the task fires, `connectionFailed` goes out only if no recovery was recorded meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from messaging import messages
from messaging.publisher import get_publisher
from models import PUBLISH, Endpoint
from settings import Settings

log = logging.getLogger(__name__)

WATCHED_EVENTS = ("IceComponentStateChanged", "ConnectionStateChanged", "MediaFlowInStateChanged")
_BAD = {"FAILED", "DISCONNECTED", "NOT_FLOWING"}
_GOOD = {"CONNECTED", "READY", "FLOWING"}


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
) -> None:
    if event_type == "MediaFlowInStateChanged" and stream != PUBLISH:
        return  # a subscriber endpoint only sends; nothing flows in by design
    state = _state(event_type, data)
    if state in _BAD:
        if Endpoint.mark_failing(participant_id, stream, time.time()):
            schedule_check(settings.connection_debounce_s)
    elif state in _GOOD:
        Endpoint.mark_recovered(participant_id, stream)


def check_connection(settings: Settings, session_id: str, participant_id: str, stream: str) -> bool:
    """Runs when the debounce period is over; True if the participant was told."""
    # A little slack: the countdown may fire a few milliseconds early on another machine's clock.
    failing_before = time.time() - settings.connection_debounce_s + 0.25
    if not Endpoint.claim_failure_report(participant_id, stream, failing_before):
        return False
    log.info("connection of %s/%s did not recover; telling the participant", participant_id, stream)
    get_publisher(settings).to_participant(session_id, participant_id, messages.connection_failed(stream))
    return True
