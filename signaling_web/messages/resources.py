"""Messages: the participant's long poll, and messages between participants."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from messaging.mailbox import UnknownParticipant
from models.errors import ParticipantLeft, ParticipantNotFound, RecipientNotFound
from signaling_web import access, admission, auth
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.messages.schemas import PollArgsSchema, PolledSchema, SendMessageSchema
from signaling_web.openapi import EXAMPLES, INVALID, NO_SUCH_PARTICIPANT, NO_SUCH_SESSION, errors
from signaling_web.ratelimit import poll_slot
from signaling_web.schemas import AcceptedSchema

# The `from` of a message the application's backend sends; never a participant id (those are uuid hex).
SERVER_SENDER = "server"

blp = Blueprint(
    "messages", __name__, url_prefix="/api/v1/sessions/<session_id>", description="Receiving and sending messages"
)


@blp.route("/participants/<participant_id>/messages")
class ParticipantMessages(MethodView):
    @blp.arguments(PollArgsSchema, location="query")
    @blp.response(200, PolledSchema, example=EXAMPLES["polled"])
    @errors(
        blp,
        INVALID,
        NO_SUCH_PARTICIPANT,
        (
            429,
            "More than MAX_POLLS_PER_PARTICIPANT polls of this participant at once.",
            "At most 2 polls of one participant may run at once.",
        ),
    )
    @access.participant
    def get(self, args: dict[str, Any], session_id: str, participant_id: str) -> dict[str, Any]:
        """Long-poll this participant's messages; `after` acknowledges what was processed"""
        mailbox = current_app.extensions["signaling_mailbox"]
        try:
            # A poll running beside the one that holds the poll lease needs a slot (at most
            # MAX_POLLS_PER_PARTICIPANT at once); the lease holder needs none.
            delivery = mailbox.poll(
                session_id,
                participant_id,
                args["after"],
                args["wait"],
                args["limit"],
                beside_another=lambda: poll_slot(participant_id, args["wait"]),
            )
        except UnknownParticipant:
            raise ParticipantNotFound() from None
        return {"messages": delivery.messages, "last_seq": delivery.last_seq}


@blp.route("/messages")
class SessionMessages(MethodView):
    @blp.arguments(SendMessageSchema, example=EXAMPLES["send_message"])
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(
        blp,
        INVALID,
        NO_SUCH_PARTICIPANT,
        (404, "`to` names no participant of this session.", RecipientNotFound("9b2c4d6e").message),
        NO_SUCH_SESSION,
        (409, "The sender has left, or the session is closed.", ParticipantLeft.message),
        post=True,
    )
    @access.member_or_operator
    def post(self, args: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Broadcast to the session, or send to one participant with `to`

        With a participant token the message is `from` that participant; with the API key (the
        application's backend) it is `from` "server"."""
        if auth.has_api_key():
            sender_id = SERVER_SENDER
            admission.get_open_session(session_id)
        else:
            sender_id = auth.current_principal().participant_id
            admission.check_acting_participant(session_id, sender_id)  # always read: no message from a ghost
        admission.check_recipient(session_id, args["to"])
        task_queue().send_message(
            session_id=session_id,
            sender_id=sender_id,
            payload=args["payload"],
            to=args["to"],
        )
        return {}
