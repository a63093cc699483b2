"""Sessions: create, read, close."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from signaling_web import auth, membership
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    AS_MEMBER_OR_OPERATOR,
    AS_OPERATOR_IF_CONFIGURED,
    EXAMPLES,
    INVALID,
    NO_SUCH_SESSION,
    NOT_YOUR_SESSION,
    errors,
    security,
)
from signaling_web.schemas import AcceptedSchema
from signaling_web.sessions.schemas import SessionCreatedSchema, SessionCreateSchema, SessionSchema

blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions", description="Signaling sessions (rooms)")

NO_API_KEY = (
    401,
    "API keys are configured (SIGNALING_API_KEYS) and no valid X-API-Key was given.",
    "A valid X-API-Key header is required.",
)
NO_CREDENTIALS = (
    401,
    "Neither a valid X-API-Key nor a valid participant token of this session.",
    "Authorization: Bearer <participant token> is required.",
)


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionCreateSchema, example=EXAMPLES["create_session"])
    @blp.response(201, SessionCreatedSchema, example=EXAMPLES["session_created"])
    @errors(blp, INVALID, NO_API_KEY, post=True)
    @security(blp, AS_OPERATOR_IF_CONFIGURED, idempotent=True)
    def post(self, args):
        """Create a session"""
        auth.require_api_key_if_configured()
        settings = current_app.extensions["signaling_settings"]
        return membership.create_session(settings, args["name"], args["max_participants"])


@blp.route("/<session_id>")
class SessionById(MethodView):
    @blp.response(200, SessionSchema, example=EXAMPLES["session"])
    @errors(blp, NO_CREDENTIALS, NOT_YOUR_SESSION, NO_SUCH_SESSION)
    @security(blp, AS_MEMBER_OR_OPERATOR)
    def get(self, session_id):
        """Read a session and its participants (API key or a participant of it)"""
        if not auth.has_api_key():
            auth.require_member(session_id)
        session = membership.get_session(session_id)
        return {
            "id": session.id,
            "name": session.name,
            "state": session.state,
            "participants": membership.participants_of(session_id),
        }

    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(
        blp,
        NO_API_KEY,
        (
            401,
            "Without API keys configured: no valid participant token of this session.",
            "Authorization: Bearer <participant token> is required.",
        ),
        (
            403,
            "Without API keys configured: the token belongs to another session.",
            "This token belongs to another session.",
        ),
        NO_SUCH_SESSION,
    )
    @security(blp, AS_MEMBER_OR_OPERATOR)
    def delete(self, session_id):
        """Close a session: everyone gets sessionClosed and the media is released

        With SIGNALING_API_KEYS set, only an API key may close a session; without keys, a
        participant of the session may."""
        if auth.api_keys_configured():
            auth.require_api_key()
        else:
            auth.require_member(session_id)  # open deployment: a participant may close its session
        membership.get_session(session_id)
        membership.close(session_id)
        return {}
