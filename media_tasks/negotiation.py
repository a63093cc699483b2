"""SDP offers and ICE candidates: the per-endpoint work of a group call.

Every function here may run on any worker, twice, or before the request the client sent
earlier; correctness comes from the conditional updates in models.endpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import kurento
from media_tasks import kms_sessions
from media_tasks.kms_events import relay_endpoint_events
from media_tasks.kms_pool import ensure_pipeline, release_quietly
from messaging import messages
from messaging.publisher import get_publisher
from models import PUBLISH, Endpoint, Participant
from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """One SDP offer being negotiated: who sent it, for which stream, under which request."""

    settings: Settings
    session_id: str
    participant_id: str
    stream: str
    sdp: str
    request_id: str


class NegotiationRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _is_active(participant_id: str) -> bool:
    participant = Participant.objects(id=participant_id).only("state").first()
    return participant is not None and participant.is_active


def _stored_endpoint(session_id: str, participant_id: str, stream: str) -> Endpoint:
    # A fresh stream costs two round trips (find, insert), a known one a single find.
    stored = (
        Endpoint.find(participant_id, stream)
        or Endpoint.ensure(session_id, participant_id, stream)
        or Endpoint.find(participant_id, stream)
    )
    if stored is None:
        # The record was deleted between our insert and the read: the participant left or the
        # session closed meanwhile (both delete endpoint records). Nothing to negotiate.
        raise NegotiationRefused(409, "the participant left while its offer was processed")
    return stored


def _install_endpoint(
    offer: Offer, replacing: kurento.WebRtcEndpoint | None
) -> tuple[kurento.WebRtcEndpoint, list[dict[str, Any]]] | None:
    """A fresh Kurento endpoint, stored in place of `replacing` and claimed for `request_id`.

    Returns (endpoint, candidates that waited for it), or None when another worker changed the
    stored endpoint first (ours is released). Exactly one endpoint survives however many race.
    """
    pipeline = ensure_pipeline(offer.settings, offer.session_id)
    endpoint = pipeline.create_webrtc_endpoint()
    relay_endpoint_events(offer.settings, endpoint, offer.session_id, offer.participant_id, offer.stream)
    kms_sessions.register_own(endpoint.client)
    pending = Endpoint.claim_kurento(
        offer.participant_id, offer.stream, endpoint, offer.request_id, replacing=replacing
    )
    if pending is None:
        release_quietly(endpoint)
        return None
    return endpoint, pending


def _publisher_endpoint(stream: str) -> kurento.WebRtcEndpoint:
    publisher = Endpoint.find(stream, PUBLISH)
    if publisher is None or publisher.kurento is None or not _is_active(stream):
        raise NegotiationRefused(409, f"participant {stream} is not publishing")
    return publisher.kurento


def _apply_candidates(endpoint: kurento.WebRtcEndpoint, candidates: list[dict[str, Any]]) -> None:
    wire = [
        (c["candidate"], c.get("sdpMid") or "", int(c.get("sdpMLineIndex") or 0))
        for c in candidates
        if c.get("candidate")
    ]  # an empty one is the end-of-candidates marker
    if wire:
        endpoint.add_ice_candidates(wire)


def process_offer(
    settings: Settings, session_id: str, participant_id: str, stream: str, sdp: str, request_id: str
) -> None:
    # No check that the participant is still joined before the work: the web tier checked it
    # when it accepted the offer, and the check after the answer releases the endpoint of one
    # who left meanwhile. That saves a read on every offer.
    publisher = get_publisher(settings)
    try:
        endpoint = _answer_offer(Offer(settings, session_id, participant_id, stream, sdp, request_id))
    except NegotiationRefused as refused:
        publisher.to_participant(session_id, participant_id, messages.error(request_id, refused.code, refused.message))
        return
    if stream == PUBLISH:
        before = Participant.mark_publishing(participant_id)
        if before is not None and not before.publishing:
            publisher.to_session(session_id, messages.stream_published(participant_id))
        still_active = before is not None
    else:
        still_active = _is_active(participant_id)
    if not still_active:
        # The participant left while we negotiated (or before: a late redelivery); leave no
        # orphan endpoint behind, on the KMS or in the record.
        release_quietly(endpoint)
        Endpoint.forget(participant_id, stream, endpoint)


def _answer_offer(offer: Offer) -> kurento.WebRtcEndpoint:
    source = _publisher_endpoint(offer.stream) if offer.stream != PUBLISH else None
    for _attempt in range(3):
        stored = _stored_endpoint(offer.session_id, offer.participant_id, offer.stream)
        if stored.negotiating_request_id == offer.request_id and stored.kurento is not None:
            if source is not None:
                source.connect(stored.kurento)  # repeated connects of the same pair are harmless
            _finish_duplicate(offer, stored.kurento)
            return stored.kurento
        installed = _install_endpoint(offer, stored.kurento)
        if installed is None:
            continue  # another offer or delivery changed the endpoint meanwhile: look again
        endpoint, pending = installed
        if source is not None:
            source.connect(endpoint)
        answer = _process_offer(offer, endpoint)
        _deliver_answer(offer, endpoint, answer, pending)
        # Kurento negotiates each endpoint once: a new offer on a stream replaced its endpoint.
        # Released after the answer went out, which is what the client waits for.
        release_quietly(stored.kurento)
        return endpoint
    raise NegotiationRefused(409, "the stream could not be renegotiated")


PROCESS_OFFER_CUT_OFF = (
    502,
    "the media server connection was lost while it processed the offer; not retried (the offer may be what "
    "broke it): offer again",
)


def _process_offer(offer: Offer, endpoint: kurento.WebRtcEndpoint) -> str:
    try:
        return endpoint.process_offer(offer.sdp)
    except kurento.KurentoUnavailable as exc:
        # Not retried like other unavailability: the same SDP may crash the server again, and
        # every media server would then be tried in turn. The client decides.
        Endpoint.record_failed_offer(offer.participant_id, offer.stream, offer.request_id)
        raise NegotiationRefused(*PROCESS_OFFER_CUT_OFF) from exc
    except kurento.KurentoError as exc:
        if exc.code in (40200, 40201, 40205, 40001):
            raise NegotiationRefused(400, f"the media server refused the offer: {exc.message}") from exc
        raise


def _deliver_answer(offer: Offer, endpoint: kurento.WebRtcEndpoint, answer: str, pending: list[dict[str, Any]]) -> None:
    # The answer first: it is what the client waits for. A crash before the record below makes
    # a redelivery send the same answer again (see _finish_duplicate), never lose it.
    get_publisher(offer.settings).to_participant(
        offer.session_id, offer.participant_id, messages.sdp_answer(offer.stream, answer, offer.request_id)
    )
    Endpoint.record_published_answer(offer.participant_id, offer.stream, offer.request_id, answer)
    # Remote candidates before gathering: KMS 6 stalled when they came after it (Kurento/bugtracker#539).
    _apply_candidates(endpoint, pending)
    endpoint.gather_candidates()


DUPLICATE_WAIT_S = 3.0


def _finish_duplicate(offer: Offer, endpoint: kurento.WebRtcEndpoint) -> None:
    """Another delivery of this same request claimed the endpoint.

    A duplicate running alongside (a publish retried by the web tier) finds the answer sent
    within moments; a redelivery after its worker died finishes what that worker left undone.
    """
    deadline = time.monotonic() + DUPLICATE_WAIT_S
    while time.monotonic() < deadline:
        stored = Endpoint.find(offer.participant_id, offer.stream)
        if stored is None:
            return
        if stored.answer_published:
            if stored.answered_request_id == offer.request_id and not stored.answer_sdp:
                raise NegotiationRefused(*PROCESS_OFFER_CUT_OFF)  # the same error again, never processOffer
            return
        time.sleep(0.05)
    stored = Endpoint.find(offer.participant_id, offer.stream)
    if stored is None:
        return  # the participant left meanwhile: nobody waits for this answer
    if stored.answered_request_id == offer.request_id and stored.answer_sdp:
        answer = stored.answer_sdp
    else:
        try:
            answer = _process_offer(offer, endpoint)
        except kurento.AlreadyNegotiated:
            answer = endpoint.get_local_session_descriptor()
    _deliver_answer(offer, endpoint, answer, [])


def add_candidates(
    settings: Settings, session_id: str, participant_id: str, stream: str, candidates: list[dict[str, Any]]
) -> None:
    # The usual case, candidates trickled after the offer: one read, one round trip to the KMS,
    # and one read to check that a re-offer did not replace the endpoint meanwhile.
    stored = Endpoint.find(participant_id, stream)
    if stored is None:
        if not _is_active(participant_id):
            return  # a late task of one who left: no record to leave behind
        Endpoint.ensure(session_id, participant_id, stream)
    if stored is None or stored.kurento is None:
        if Endpoint.buffer_candidates(participant_id, stream, candidates, settings.max_candidates_per_stream):
            return  # the endpoint does not exist yet; whoever creates it applies these
        stored = Endpoint.find(participant_id, stream)  # it appeared meanwhile, or the buffer is full
        if stored is not None and stored.kurento is None:
            _refuse_candidates(settings, session_id, participant_id, stream, len(candidates))
            return
        if stored is None or stored.kurento is None:
            log.info("endpoint of %s/%s went away (a rejoin); candidates dropped", participant_id, stream)
            return
    applied_to = stored.kurento
    _apply_quietly(participant_id, stream, applied_to, candidates)
    # A re-offer may have stored a fresh endpoint between the read and the apply (its offer task
    # runs beside this one): these candidates then belong to the new endpoint, not to the old one
    # it is about to release (issue 13). Read again and follow the replacement.
    current = Endpoint.find(participant_id, stream)
    if current is not None and current.kurento is not None and current.kurento != applied_to:
        _apply_quietly(participant_id, stream, current.kurento, candidates)


def _apply_quietly(
    participant_id: str, stream: str, endpoint: kurento.WebRtcEndpoint, candidates: list[dict[str, Any]]
) -> None:
    try:
        _apply_candidates(endpoint, candidates)
    except kurento.ObjectNotFound:
        log.info("endpoint of %s/%s is gone; candidates dropped", participant_id, stream)


def _refuse_candidates(settings: Settings, session_id: str, participant_id: str, stream: str, count: int) -> None:
    limit = settings.max_candidates_per_stream
    log.warning("candidate buffer of %s/%s full (%d); %d dropped", participant_id, stream, limit, count)
    get_publisher(settings).to_participant(
        session_id,
        participant_id,
        messages.error(
            None,
            413,
            f"{count} ICE candidates for stream {stream} dropped: at most {limit} wait for an offer to be processed",
        ),
    )
