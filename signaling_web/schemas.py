"""Schemas shared by several resources."""

from __future__ import annotations

import marshmallow as ma

from signaling_web.extensions import Schema


class ParticipantSummarySchema(Schema):
    participant_id = ma.fields.Str(attribute="id", dump_only=True)
    display_name = ma.fields.Str(dump_only=True)
    publishing = ma.fields.Bool(dump_only=True)
    state = ma.fields.Str(dump_only=True)
    role = ma.fields.Str(dump_only=True, metadata={"enum": ["publisher", "subscriber", "moderator"]})
    metadata = ma.fields.Dict(dump_only=True, metadata={"description": "The application's data about it ({} if none)."})


class AcceptedSchema(Schema):
    """An empty 202 body: the work is queued."""


class RequestAcceptedSchema(Schema):
    request_id = ma.fields.Str(required=True, metadata={"description": "Echoed in the sdpAnswer or error message."})


ROLE_DOC = {
    "description": "`publisher` sends and receives; `subscriber` only receives (an offer on its own stream "
    "is refused with 403); `moderator` publishes and may remove participants and close the session.",
}
METADATA_DOC = {"description": "Any JSON object, at most 4 KiB; shown to everyone with the participant."}
