"""A participant's publications after the web tier accepted a request on one (issue 15): unpublishing
it, and applying its stored mute state to every subscriber.

Both may run on any worker, twice, or beside an offer on the same publication: unpublishing
announces only when its call removed the record, and a mute applies the state stored when it
runs (not the request's change), so repeated or reordered runs converge on the latest.
"""

from __future__ import annotations

import logging

import kurento
from media_tasks import recordings
from media_tasks.kms_pool import release_quietly
from media_tasks.negotiation import forwarded_media_types
from messaging import messages
from messaging.publisher import get_publisher
from models import Endpoint, KurentoRef, Participant, streams
from settings import Settings

log = logging.getLogger(__name__)


def unpublish(settings: Settings, session_id: str, participant_id: str, name: str, reason: str) -> None:
    """Stops its recordings (their files finish while media flows), releases the publication's endpoint
    and its subscribers', then tells everyone."""
    recordings.stop_publication(settings, session_id, participant_id, name, reason)
    removed, refs = Endpoint.detach_publication(session_id, participant_id, name)
    for ref in refs:
        release_quietly(KurentoRef.decode(ref).proxy())
    if name == streams.MAIN:
        removed = Participant.set_publishing(participant_id, False) or removed
    if removed:
        get_publisher(settings).to_session(session_id, messages.stream_unpublished(participant_id, name, reason))


def apply_mute(settings: Settings, session_id: str, participant_id: str, name: str) -> None:
    """Makes the media server forward to each subscriber exactly the kinds the publication's stored
    state leaves unmuted (`disconnect`/`connect` with `mediaType`, one transaction), then tells everyone.
    One read (the publication with its subscribers), one KMS round trip, one broadcast."""
    publication = Endpoint.publication(session_id, participant_id, name)
    if publication is None:
        return  # unpublished (or left) meanwhile: nothing to mute, nobody to tell
    if publication.kurento is not None and publication.subscribers:
        source = KurentoRef.decode(publication.kurento).proxy()
        operations = []
        for ref in publication.subscribers.values():
            sink = KurentoRef.decode(ref).proxy()
            if sink.client is not source.client:
                continue
            for kind, muted in (("AUDIO", publication.muted_audio), ("VIDEO", publication.muted_video)):
                operations.append((source, "disconnect" if muted else "connect", sink, kind))
        _apply(operations)
    get_publisher(settings).to_session(
        session_id, messages.stream_muted(participant_id, name, publication.muted_audio, publication.muted_video)
    )


def _apply(operations: list[tuple[kurento.MediaObject, str, kurento.MediaObject, str]]) -> None:
    if not operations:
        return
    tx = operations[0][0].client.transaction()
    for source, operation, sink, kind in operations:
        tx.invoke(source, operation, sink=sink, mediaType=kind)
    try:
        tx.commit()
    except kurento.KurentoUnavailable:
        raise  # retried as a task
    except kurento.KurentoError as exc:
        # A subscriber's endpoint was released meanwhile (it left): the rest one by one.
        log.info("mute: %s; applying the rest one by one", exc)
        for source, operation, sink, kind in operations[(exc.failed_index or 0) + 1 :]:
            try:
                source.invoke(operation, sink=sink, mediaType=kind)
            except kurento.KurentoError as again:
                log.info("mute: %s", again)


__all__ = ["apply_mute", "forwarded_media_types", "unpublish"]
