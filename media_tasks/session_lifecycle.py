"""The session lifecycle on the media side: what follows a join, a leave, a rejoin and a close once the web
tier has admitted or marked it (signaling_web.admission), and messages between participants."""

from __future__ import annotations

import logging
from typing import Any

from media_tasks import recordings
from media_tasks.kms_pool import NoMediaServer, ensure_pipeline, release_quietly
from messaging import messages, topology, webhook_events
from messaging.broker import broker_channel
from messaging.publisher import get_publisher
from models import Endpoint, KurentoRef, Participant, Session, clock, streams
from settings import Settings

log = logging.getLogger(__name__)


def prepare_session(settings: Settings, session_id: str) -> None:
    """Declares the session's exchange (the web tier already did, at creation) unless the session
    is closed: a late or redelivered run must not bring a closed session's exchange back."""
    webhook_events.session_created(settings, session_id)
    if Session.is_closed(session_id):
        return
    with broker_channel(settings) as channel:
        topology.declare_session(channel, settings, session_id)
        # Closed meanwhile: its close may have deleted the exchange before this declare.
        if Session.is_closed(session_id):
            topology.delete_session_exchange(channel, settings, session_id)


def announce_join(
    settings: Settings,
    session_id: str,
    participant_id: str,
    display_name: str,
    role: str = "publisher",
    metadata: dict[str, Any] | None = None,
) -> None:
    if not Participant.was_announced(participant_id, "joined"):
        joined = messages.participant_joined(participant_id, display_name, role, metadata or {})
        get_publisher(settings).to_session(session_id, joined)
        Participant.mark_announced(participant_id, "joined")
    try:
        # Warm the pipeline now so the first offer does not wait for it.
        ensure_pipeline(settings, session_id)
    except NoMediaServer:
        log.warning("no media server for session %s yet; offers will retry", session_id)


def release_endpoints_of(session_id: str, participant_id: str) -> set[str]:
    """Frees the participant's endpoints and every subscriber endpoint its publications fed; returns
    the names of the publications whose records this call removed."""
    removed = set()
    for stored in Endpoint.linked_to(session_id, participant_id):
        release_quietly(stored.kurento)
        if (
            Endpoint.discard(stored.id)
            and stored.participant_id == participant_id
            and streams.is_publish(stored.stream)
        ):
            removed.add(streams.name_of(stored.stream))
    return removed


def finish_leave(settings: Settings, session_id: str, participant_id: str, reason: str, was_publishing: bool) -> None:
    """Media clean-up and announcements after the web tier marked the participant left."""
    recordings.stop_all_of(settings, session_id, participant_id, "left")  # their files finish while media flows
    publications = release_endpoints_of(session_id, participant_id)
    if not Participant.was_announced(participant_id, "left"):
        publisher = get_publisher(settings)
        if was_publishing:
            publications.add(streams.MAIN)
        # Every publication ends with its publisher ("left", whatever the leave's reason: see participantLeft).
        for name in sorted(publications, key=lambda n: (n != streams.MAIN, n)):
            if name == streams.MAIN and not was_publishing:
                continue  # offered but never answered: it was never announced
            publisher.to_session(session_id, messages.stream_unpublished(participant_id, name, "left"))
        publisher.to_session(session_id, messages.participant_left(participant_id, reason))
        Participant.mark_announced(participant_id, "left")
    with broker_channel(settings) as channel:
        # Unbound, the queue gets no more broadcasts; it expires once the client stops polling.
        topology.unbind_participant(channel, settings, session_id, participant_id)


def finish_close(settings: Settings, session_id: str, reason: str = "closed") -> None:
    """Tells everyone (and the backend, why: "closed" or "empty"), releases the pipeline (and with it
    every endpoint) and forgets the media."""
    if not Session.was_announced(session_id, "closed"):
        get_publisher(settings).to_session(session_id, messages.session_closed())
        webhook_events.session_closed(settings, session_id, reason)
        Session.mark_announced(session_id, "closed")
    Participant.mark_all_left(session_id, "session_closed")
    recordings.stop_all_in(settings, session_id, "sessionClosed")
    session = Session.find(session_id)
    if session is not None:
        release_quietly(session.pipeline)
    Endpoint.forget_all_in(session_id)
    with broker_channel(settings) as channel:
        topology.delete_session_exchange(channel, settings, session_id)


def send_message(settings: Settings, session_id: str, sender_id: str, payload: dict, to: str | None) -> None:
    publisher = get_publisher(settings)
    message = messages.chat_message(sender_id, payload)
    if to is None:
        publisher.to_session(session_id, message)
    else:
        publisher.to_participant(session_id, to, message)


def finish_rejoin(
    settings: Settings,
    session_id: str,
    participant_id: str,
    endpoint_refs: list[str],
    was_publishing: bool,
    publications: list[str] | None = None,
) -> None:
    """Releases the media the web tier detached at rejoin, then tells subscribers to resubscribe later
    (`publications`: its publications other than main, which `was_publishing` stands for)."""
    for ref in endpoint_refs:
        release_quietly(KurentoRef.decode(ref).proxy())
    ended = ([streams.MAIN] if was_publishing else []) + list(publications or [])
    for name in ended:
        get_publisher(settings).to_session(session_id, messages.stream_unpublished(participant_id, name, "rejoined"))


def remove_silent_participants(settings: Settings) -> int:
    """Participants that stopped polling leave as if they had asked; their queues then expire."""
    removed = 0
    for participant in Participant.silent_since(clock.now() - settings.participant_timeout_s):
        before = Participant.mark_left(participant.id, "timeout")
        if before is None:
            continue
        Session.release_slot(participant.session_id)
        finish_leave(settings, participant.session_id, participant.id, "timeout", before.publishing)
        removed += 1
    if removed:
        log.info("removed %d participant(s) that stopped polling", removed)
    return removed
