"""Sessions: create, read, close."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from models import Session
from models.session import BANDWIDTH_FIELDS, SessionPage
from signaling_web import access, admission, auth
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import EXAMPLES, HAS_LEFT, INVALID, NO_SUCH_SESSION, errors
from signaling_web.participant_cache import participant_cache
from signaling_web.schemas import AcceptedSchema
from signaling_web.sessions.schemas import (
    SessionCreatedSchema,
    SessionCreateSchema,
    SessionListArgsSchema,
    SessionListSchema,
    SessionSchema,
)

blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions", description="Signaling sessions (rooms)")


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionListArgsSchema, location="query")
    @blp.response(200, SessionListSchema, example=EXAMPLES["session_list"])
    @errors(blp, INVALID)
    @access.operator
    def get(self, args: dict[str, Any]) -> SessionPage:
        """List sessions, newest first, a page at a time (API key)

        Pages follow `next_cursor` until it is null. Sessions created while paging come before the
        first page's cursor, so no page repeats or skips one. Closed sessions are listed until they
        are deleted, RETENTION_S after their close."""
        return Session.page(args["state"], args["cursor"], args["limit"])

    @blp.arguments(SessionCreateSchema, example=EXAMPLES["create_session"])
    @blp.response(201, SessionCreatedSchema, example=EXAMPLES["session_created"])
    @errors(blp, INVALID, post=True)
    @access.operator_if_configured
    def post(self, args: dict[str, Any]) -> Session:
        """Create a session"""
        settings = current_app.extensions["signaling_settings"]
        bandwidth = {k: v for k, v in args.items() if k in BANDWIDTH_FIELDS and v is not None}
        return admission.create_session(settings, task_queue(), args["name"], args["max_participants"], **bandwidth)


@blp.route("/<session_id>")
class SessionById(MethodView):
    @blp.response(200, SessionSchema, example=EXAMPLES["session"])
    @errors(blp, NO_SUCH_SESSION, HAS_LEFT)
    @access.member_or_operator
    def get(self, session_id: str) -> dict[str, Any]:
        """Read a session and its participants (API key or a joined participant of it)"""
        reader = auth.principal_if_any()
        if reader is not None:  # always read: one who left or was removed no longer sees the session
            admission.check_acting_participant(session_id, reader.participant_id)
        session = admission.get_session(session_id)
        return {
            "id": session.id,
            "name": session.name,
            "state": session.state,
            "participants": admission.participants_of(session_id),
        }

    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_SUCH_SESSION, HAS_LEFT)
    @access.moderator_or_operator
    def delete(self, session_id: str) -> dict[str, Any]:
        """Close a session: everyone gets sessionClosed and the media is released

        An API key or a joined `moderator` of the session closes it; no other participant's token
        does. Without SIGNALING_API_KEYS only moderators (minted tokens need a key too) could, so
        sessions end when empty (EMPTY_SESSION_TIMEOUT_S)."""
        closer = auth.principal_if_any()
        if closer is not None:
            admission.check_moderator(session_id, closer.participant_id, closer.role)
        admission.get_session(session_id)
        try:
            admission.close(task_queue(), session_id)
        finally:  # even when enqueueing failed: its participants may be marked left already
            participant_cache().forget_session(session_id)
        return {}
