"""A participant's publications after the web tier accepted a request on one (issue 15): unpublishing
it, and applying its stored mute state to every subscriber.

Both may run on any worker, twice, or beside an offer on the same publication: unpublishing
announces only when its call removed the record, and a mute applies the state stored when it
runs (not the request's change), so repeated or reordered runs converge on the latest.
"""

from __future__ import annotations

import logging
from typing import Any

import kurento
from media_tasks import recordings
from media_tasks.kms_pool import release_quietly, same_server
from messaging import messages
from messaging.publisher import get_publisher
from models import Endpoint, KurentoRef, Participant, streams
from settings import Settings

log = logging.getLogger(__name__)

# KMS connects every kind when `connect` names none; a muted kind is left out.
_ALL_KINDS = ("AUDIO", "VIDEO", "DATA")


def forwarded_media_types(muted_audio: bool, muted_video: bool) -> list[str | None]:
    """The `mediaType`s to connect a publication to a subscriber with: [None] (all) when nothing is muted."""
    if not (muted_audio or muted_video):
        return [None]
    muted = {"AUDIO"} if muted_audio else set()
    muted |= {"VIDEO"} if muted_video else set()
    return [kind for kind in _ALL_KINDS if kind not in muted]


def connect_params(sink: Any, media_type: str | None) -> dict[str, Any]:
    return {"sink": sink} if media_type is None else {"sink": sink, "mediaType": media_type}


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


def apply_mute(settings: Settings, session_id: str, participant_id: str, name: str, *, announce: bool = True) -> None:
    """Makes the media server forward to each subscriber exactly the kinds the publication's stored
    state leaves unmuted (`disconnect`/`connect` with `mediaType`, one transaction), then tells everyone
    (unless `announce` is False: a re-offer that raced a mute applies it again, the mute told already).
    One read (the publication with its subscribers), one KMS round trip, one broadcast."""
    publication = Endpoint.publication(session_id, participant_id, name)
    if publication is None:
        return  # unpublished (or left) meanwhile: nothing to mute, nobody to tell
    if publication.kurento is not None and publication.subscribers:
        source = KurentoRef.decode(publication.kurento).proxy()
        operations = []
        for ref in publication.subscribers.values():
            sink = KurentoRef.decode(ref).proxy()
            if not same_server(sink, source):
                continue
            for kind, muted in (("AUDIO", publication.muted_audio), ("VIDEO", publication.muted_video)):
                operations.append((source, "disconnect" if muted else "connect", sink, kind))
        _apply(operations)
    if not announce:
        return
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


__all__ = ["apply_mute", "connect_params", "forwarded_media_types", "unpublish"]
