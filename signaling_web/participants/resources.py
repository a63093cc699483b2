"""Participants: join, rejoin, leave, SDP offers and ICE candidates."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from flask.views import MethodView

from models.errors import SessionFull, StreamNotFound, TooManyPublications, WrongJoinToken
from signaling_web import access, admission, auth, ice_servers
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    EXAMPLES,
    HAS_LEFT,
    INVALID,
    NO_SUCH_PARTICIPANT,
    NO_SUCH_SESSION,
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


def _negotiating_participant(session_id: str, participant_id: str, stream: str, offer: bool = False) -> str:
    """The caller (checked by access.participant) is in an open session, not left, and `stream`
    names a publisher here; from this process's cache when it can (signaling_web.participant_cache:
    safe for offers and candidates, which the workers check again). Returns the stream as the
    records name it ("publish:main" is "publish")."""
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
        (403, "Wrong join token.", WrongJoinToken.message),
        NO_SUCH_SESSION,
        (409, "The session is full or closed.", SessionFull(16).message),
        post=True,
    )
    @access.anyone
    def post(self, args: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Join a session with its join token"""
        settings = current_app.extensions["signaling_settings"]
        ticket = participant_cache().ticket()
        participant = admission.join(settings, task_queue(), session_id, args["join_token"], args["display_name"])
        participant_cache().remember(session_id, participant.id, ticket)  # its first offer needs no read
        return {
            "participant_id": participant.id,
            "token": auth.issue_token(session_id, participant.id),
            "participants": admission.participants_of(session_id),
            "ice_servers": ice_servers.for_participant(participant.id),
        }


@blp.route("/<participant_id>")
class ParticipantById(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_SUCH_PARTICIPANT)
    @access.participant
    def delete(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """Leave the session"""
        admission.get_participant(session_id, participant_id)
        try:
            admission.leave(task_queue(), session_id, participant_id, reason="left")
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
    @errors(blp, INVALID, NO_SUCH_PARTICIPANT, NO_SUCH_STREAM, HAS_LEFT, TOO_MANY_PUBLICATIONS, post=True)
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
    @errors(blp, INVALID, NO_SUCH_PARTICIPANT, NO_SUCH_STREAM, HAS_LEFT, post=True)
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
