"""Participants: join, rejoin, leave, SDP offers and ICE candidates."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import current_app
from flask.views import MethodView

from models.errors import (
    JoinTokenUsed,
    ParticipantLeft,
    SessionFull,
    StreamNotFound,
    SubscriberCannotPublish,
    TooManyPublications,
    WrongJoinToken,
)
from signaling_web import access, admission, auth, ice_servers
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    EXAMPLES,
    HAS_LEFT,
    INVALID,
    NO_SUCH_PARTICIPANT,
    NO_SUCH_SESSION,
    NOT_A_MODERATOR,
    errors,
)
from signaling_web.participant_cache import participant_cache
from signaling_web.participants.schemas import CandidatesSchema, JoinedSchema, JoinSchema, OfferSchema
from signaling_web.schemas import AcceptedSchema, RejoinedSchema, RequestAcceptedSchema

blp = Blueprint(
    "participants",
    __name__,
    url_prefix="/api/v1/sessions/<session_id>/participants",
    description="Joining a session and negotiating media",
)

NO_SUCH_STREAM = (404, "`stream` names no participant of this session.", StreamNotFound("9b2c4d6e").message)
TOO_MANY_PUBLICATIONS = (
    409,
    "An offer for a fifth publication of this participant (at most 4: unpublish one first).",
    TooManyPublications().message,
)


SUBSCRIBER_PUBLISHES = (
    403,
    "A subscriber offered (or sent candidates) on one of its own publications.",
    SubscriberCannotPublish.message,
)


def _negotiating_participant(session_id: str, participant_id: str, stream: str, offer: bool = False) -> str:
    """The caller (checked by access.participant) may send on `stream` (its role, from its token),
    is in an open session, not left, and `stream` names a publisher here; from this process's
    cache when it can (signaling_web.participant_cache: safe for offers and candidates, which the
    workers check again). Returns the stream as the records name it ("publish:main" is "publish")."""
    admission.check_may_offer(auth.current_principal().role, stream)
    cache = participant_cache()
    admission.check_acting_participant(session_id, participant_id, cache)
    return admission.check_stream(session_id, participant_id, stream, cache, offer=offer)


@blp.route("")
class Participants(MethodView):
    @blp.arguments(JoinSchema, example=EXAMPLES["join"])
    @blp.response(201, JoinedSchema, example=EXAMPLES["joined"])
    @errors(
        blp,
        INVALID,
        (403, "Wrong join token (or one rotated out), or a minted one that expired.", WrongJoinToken.message),
        NO_SUCH_SESSION,
        (409, "The session is full or closed.", SessionFull(16).message),
        (409, "The minted join token was used already.", JoinTokenUsed.message),
        post=True,
    )
    @access.anyone
    def post(self, args: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Join a session with its shared join token (as a publisher) or a minted one (its role)"""
        settings = current_app.extensions["signaling_settings"]
        ticket = participant_cache().ticket()
        issued_after = time.time()
        participant = admission.join(
            settings, task_queue(), session_id, args["join_token"], args["display_name"], args["metadata"]
        )
        participant_cache().remember(session_id, participant.id, ticket)  # its first offer needs no read
        return {
            "participant_id": participant.id,
            "token": auth.issue_token(session_id, participant.id, participant.role),
            "role": participant.role,
            "token_expires_at": auth.token_expiry(issued_after),
            "participants": admission.participants_of(session_id),
            "ice_servers": ice_servers.for_participant(participant.id),
        }


@blp.route("/<participant_id>")
class ParticipantById(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_SUCH_PARTICIPANT, HAS_LEFT, NOT_A_MODERATOR)
    @access.self_moderator_or_operator
    def delete(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """Leave the session; or remove a participant (API key, or a moderator of the session)

        Everyone gets `participantLeft` with `reason` "left" for one's own leave, "removed" otherwise.
        A removed participant's token is refused (409) from then on, but for its poll, which drains
        what is queued (its own `participantLeft` included)."""
        caller = auth.principal_if_any()
        removing = caller is None or caller.participant_id != participant_id
        if caller is not None and removing:
            admission.check_moderator(session_id, caller.participant_id, caller.role)
        if not admission.get_participant(session_id, participant_id).is_active:
            raise ParticipantLeft()
        try:
            admission.leave(task_queue(), session_id, participant_id, reason="removed" if removing else "left")
        finally:  # even when enqueueing failed: the participant may be marked left already
            participant_cache().forget(participant_id)
        return {}


@blp.route("/<participant_id>/rejoin")
class Rejoin(MethodView):
    @blp.response(202, RejoinedSchema, example=EXAMPLES["rejoined"])
    @errors(blp, NO_SUCH_PARTICIPANT, HAS_LEFT, post=True)
    @access.participant
    def post(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """Get fresh media after mediaServerLost or connectionFailed; same id, same queue"""
        admission.check_acting_participant(session_id, participant_id)
        admission.rejoin(task_queue(), session_id, participant_id)
        return {"ice_servers": ice_servers.for_participant(participant_id)}


@blp.route("/<participant_id>/offers")
class Offers(MethodView):
    @blp.arguments(OfferSchema, example=EXAMPLES["offer"])
    @blp.response(202, RequestAcceptedSchema, example=EXAMPLES["offer_accepted"])
    @errors(
        blp,
        INVALID,
        NO_SUCH_PARTICIPANT,
        NO_SUCH_STREAM,
        HAS_LEFT,
        TOO_MANY_PUBLICATIONS,
        SUBSCRIBER_PUBLISHES,
        post=True,
    )
    @access.participant
    def post(self, args: dict[str, Any], session_id: str, participant_id: str) -> dict[str, Any]:
        """Send an SDP offer for a stream; the answer arrives as an sdpAnswer message"""
        stream = _negotiating_participant(session_id, participant_id, args["stream"], offer=True)
        request_id = uuid.uuid4().hex
        task_queue().process_offer(
            session_id=session_id,
            participant_id=participant_id,
            stream=stream,
            sdp=args["sdp"],
            request_id=request_id,
        )
        return {"request_id": request_id}


@blp.route("/<participant_id>/candidates")
class Candidates(MethodView):
    @blp.arguments(CandidatesSchema, example=EXAMPLES["candidates"])
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, INVALID, NO_SUCH_PARTICIPANT, NO_SUCH_STREAM, HAS_LEFT, SUBSCRIBER_PUBLISHES, post=True)
    @access.participant
    def post(self, args: dict[str, Any], session_id: str, participant_id: str) -> dict[str, Any]:
        """Trickle one or several ICE candidates for a stream"""
        stream = _negotiating_participant(session_id, participant_id, args["stream"])
        candidates = args["candidates"] or [args["candidate"]]
        wire = [{k: c[k] for k in ("candidate", "sdpMid", "sdpMLineIndex")} for c in candidates]
        task_queue().add_candidates(
            session_id=session_id,
            participant_id=participant_id,
            stream=stream,
            candidates=wire,
        )
        return {}
