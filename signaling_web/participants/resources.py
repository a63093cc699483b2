"""Participants: join, rejoin, leave, SDP offers and ICE candidates."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort

from models import PUBLISH
from signaling_web import auth, membership
from signaling_web.dispatch import enqueue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    ANYONE,
    AS_PARTICIPANT,
    EXAMPLES,
    INVALID,
    NO_SUCH_PARTICIPANT,
    NO_SUCH_SESSION,
    NO_TOKEN,
    NOT_YOURS,
    errors,
    security,
)
from signaling_web.participants.schemas import CandidatesSchema, JoinedSchema, JoinSchema, OfferSchema
from signaling_web.schemas import AcceptedSchema, RequestAcceptedSchema

blp = Blueprint(
    "participants",
    __name__,
    url_prefix="/api/v1/sessions/<session_id>/participants",
    description="Joining a session and negotiating media",
)

HAS_LEFT = (409, "The participant has left, or the session is closed.", "This participant has left the session.")
NO_SUCH_STREAM = (404, "`stream` names no participant of this session.", "No participant 9b2c4d6e in this session.")


def _acting_participant(session_id: str, participant_id: str, stream: str | None = None) -> None:
    """The caller is this participant, in an open session, not left; `stream` names a publisher here."""
    auth.require_participant(session_id, participant_id)
    membership.get_acting_participant(session_id, participant_id)
    if stream is not None:
        _check_stream(session_id, participant_id, stream)


def _check_stream(session_id: str, participant_id: str, stream: str) -> None:
    if stream == PUBLISH:
        return
    if stream == participant_id:
        abort(422, message='Use stream "publish" for your own media.', errors={"stream": ["own participant id"]})
    if not membership.participant_exists(session_id, stream):
        abort(404, message=f"No participant {stream} in this session.")


@blp.route("")
class Participants(MethodView):
    @blp.arguments(JoinSchema, example=EXAMPLES["join"])
    @blp.response(201, JoinedSchema, example=EXAMPLES["joined"])
    @errors(
        blp,
        INVALID,
        (403, "Wrong join token.", "The join token does not match this session."),
        NO_SUCH_SESSION,
        (409, "The session is full or closed.", "The session is full (16 participants)."),
        post=True,
    )
    @security(blp, ANYONE, idempotent=True)
    def post(self, args, session_id):
        """Join a session with its join token"""
        session = membership.get_open_session(session_id)
        if not auth.join_token_matches(session.join_token, args["join_token"]):
            abort(403, message="The join token does not match this session.")
        settings = current_app.extensions["signaling_settings"]
        participant = membership.join(settings, session, args["display_name"])
        return {
            "participant_id": participant.id,
            "token": auth.issue_token(session_id, participant.id),
            "participants": membership.participants_of(session_id),
        }


@blp.route("/<participant_id>")
class ParticipantById(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_TOKEN, NOT_YOURS, NO_SUCH_PARTICIPANT)
    @security(blp, AS_PARTICIPANT)
    def delete(self, session_id, participant_id):
        """Leave the session"""
        auth.require_participant(session_id, participant_id)
        membership.get_participant(session_id, participant_id)
        membership.leave(session_id, participant_id, reason="left")
        return {}


@blp.route("/<participant_id>/rejoin")
class Rejoin(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_TOKEN, NOT_YOURS, NO_SUCH_PARTICIPANT, HAS_LEFT, post=True)
    @security(blp, AS_PARTICIPANT, idempotent=True)
    def post(self, session_id, participant_id):
        """Get fresh media after mediaServerLost or connectionFailed; same id, same queue"""
        _acting_participant(session_id, participant_id)
        membership.rejoin(session_id, participant_id)
        return {}


@blp.route("/<participant_id>/offers")
class Offers(MethodView):
    @blp.arguments(OfferSchema, example=EXAMPLES["offer"])
    @blp.response(202, RequestAcceptedSchema, example=EXAMPLES["offer_accepted"])
    @errors(blp, INVALID, NO_TOKEN, NOT_YOURS, NO_SUCH_PARTICIPANT, NO_SUCH_STREAM, HAS_LEFT, post=True)
    @security(blp, AS_PARTICIPANT, idempotent=True)
    def post(self, args, session_id, participant_id):
        """Send an SDP offer for a stream; the answer arrives as an sdpAnswer message"""
        _acting_participant(session_id, participant_id, args["stream"])
        request_id = uuid.uuid4().hex
        enqueue(
            "media.process_offer",
            hide=("sdp",),
            session_id=session_id,
            participant_id=participant_id,
            stream=args["stream"],
            sdp=args["sdp"],
            request_id=request_id,
        )
        return {"request_id": request_id}


@blp.route("/<participant_id>/candidates")
class Candidates(MethodView):
    @blp.arguments(CandidatesSchema, example=EXAMPLES["candidates"])
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, INVALID, NO_TOKEN, NOT_YOURS, NO_SUCH_PARTICIPANT, NO_SUCH_STREAM, HAS_LEFT, post=True)
    @security(blp, AS_PARTICIPANT, idempotent=True)
    def post(self, args, session_id, participant_id):
        """Trickle one or several ICE candidates for a stream"""
        _acting_participant(session_id, participant_id, args["stream"])
        candidates = args["candidates"] or [args["candidate"]]
        wire = [{k: c[k] for k in ("candidate", "sdpMid", "sdpMLineIndex")} for c in candidates]
        enqueue(
            "media.add_candidates",
            session_id=session_id,
            participant_id=participant_id,
            stream=args["stream"],
            candidates=wire,
        )
        return {}
