"""A participant's publications (issue 15): unpublishing one, and muting it for every subscriber."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from models import ParticipantRole
from models.errors import BadStreamName, PublicationNotFound
from signaling_web import access, admission, auth
from signaling_web.auth import NotYourParticipant, NotYourSession, TokenRequired
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import AS_MEMBER_OR_OPERATOR, EXAMPLES, INVALID, errors
from signaling_web.schemas import AcceptedSchema
from signaling_web.streams.schemas import MuteSchema

blp = Blueprint(
    "streams",
    __name__,
    url_prefix="/api/v1/sessions/<session_id>/participants/<participant_id>/streams",
    description="A participant's publications: unpublish, mute",
)

NO_SUCH_PUBLICATION = (
    404,
    "The participant (of this session) has no publication of that name.",
    PublicationNotFound("screen").message,
)
BAD_NAME = (422, "The name is not 1 to 32 of a-z, 0-9, _ and -.", BadStreamName.message)


def is_moderator(session_id: str, principal: auth.ParticipantPrincipal) -> bool:
    """Whether this participant token is a `moderator` of the session (its role, from the token),
    still joined (one read; a moderator who left gets 409). Decides for every route of this module."""
    if principal.role != ParticipantRole.MODERATOR:
        return False
    admission.check_acting_participant(session_id, principal.participant_id)
    return True


def _publisher_or_moderator_or_operator() -> None:
    """The API key; or the token of the participant the path names (its own streams) or of a moderator."""
    if auth.has_api_key():
        return
    principal = auth.read_participant_token()
    if principal is None:
        raise TokenRequired()
    session_id, participant_id = (str((request.view_args or {})[k]) for k in ("session_id", "participant_id"))
    if principal.session_id != session_id:
        raise NotYourSession()
    if principal.participant_id != participant_id and not is_moderator(session_id, principal):
        raise NotYourParticipant()


publisher_or_moderator = access.Role(
    _publisher_or_moderator_or_operator,
    AS_MEMBER_OR_OPERATOR,
    (
        (401, "Neither a valid X-API-Key nor a valid participant token.", TokenRequired.message),
        (
            403,
            "The token belongs to another session, or to another participant who is not a moderator.",
            NotYourParticipant.message,
        ),
    ),
)


@blp.route("/<name>")
class Publication(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, BAD_NAME, NO_SUCH_PUBLICATION)
    @publisher_or_moderator
    def delete(self, session_id: str, participant_id: str, name: str) -> dict[str, Any]:
        """Unpublish: the publication's endpoints and its subscribers' are released; everyone gets
        streamUnpublished (reason "unpublished")"""
        admission.unpublish(task_queue(), session_id, participant_id, name)
        return {}


@blp.route("/<name>/mute")
class Mute(MethodView):
    @blp.arguments(MuteSchema, example=EXAMPLES["mute"])
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, INVALID, BAD_NAME, NO_SUCH_PUBLICATION, post=True)
    @publisher_or_moderator
    def post(self, args: dict[str, Any], session_id: str, participant_id: str, name: str) -> dict[str, Any]:
        """Mute or unmute a publication for every subscriber (true stops forwarding that kind, false resumes,
        absent leaves it); everyone gets streamMuted with the state of both kinds"""
        admission.mute(task_queue(), session_id, participant_id, name, args.get("audio"), args.get("video"))
        return {}
