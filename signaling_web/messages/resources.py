"""Messages: the participant's long poll, and messages between participants."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort

from messaging.mailbox import UnknownParticipant
from signaling_web import auth, membership
from signaling_web.dispatch import enqueue
from signaling_web.extensions import Blueprint
from signaling_web.messages.schemas import PollArgsSchema, PolledSchema, SendMessageSchema
from signaling_web.openapi import (
    AS_PARTICIPANT,
    EXAMPLES,
    INVALID,
    NO_SUCH_PARTICIPANT,
    NO_TOKEN,
    NOT_YOUR_SESSION,
    NOT_YOURS,
    errors,
    security,
)
from signaling_web.ratelimit import poll_slot
from signaling_web.schemas import AcceptedSchema

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
        NO_TOKEN,
        NOT_YOURS,
        NO_SUCH_PARTICIPANT,
        (
            429,
            "More than MAX_POLLS_PER_PARTICIPANT polls of this participant at once.",
            "At most 2 polls of one participant may run at once.",
        ),
    )
    @security(blp, AS_PARTICIPANT)
    def get(self, args, session_id, participant_id):
        """Long-poll this participant's messages; `after` acknowledges what was processed"""
        auth.require_participant(session_id, participant_id)
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
            abort(404, message=membership.NO_SUCH_PARTICIPANT)
        return {"messages": delivery.messages, "last_seq": delivery.last_seq}


@blp.route("/messages")
class SessionMessages(MethodView):
    @blp.arguments(SendMessageSchema, example=EXAMPLES["send_message"])
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(
        blp,
        INVALID,
        NO_TOKEN,
        NOT_YOUR_SESSION,
        NO_SUCH_PARTICIPANT,
        (404, "`to` names no participant of this session.", "No participant 9b2c4d6e in this session."),
        (409, "The sender has left, or the session is closed.", "This participant has left the session."),
        post=True,
    )
    @security(blp, AS_PARTICIPANT, idempotent=True)
    def post(self, args, session_id):
        """Broadcast to the session, or send to one participant with `to`"""
        principal = auth.require_member(session_id)
        membership.get_acting_participant(session_id, principal.participant_id)
        if args["to"] is not None and not membership.participant_exists(session_id, args["to"]):
            abort(404, message=f"No participant {args['to']} in this session.")
        enqueue(
            "media.send_message",
            session_id=session_id,
            sender_id=principal.participant_id,
            payload=args["payload"],
            to=args["to"],
        )
        return {}
