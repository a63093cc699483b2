"""Schemas shared by several resources."""

from __future__ import annotations

import marshmallow as ma

from signaling_web.extensions import Schema


class ParticipantSummarySchema(Schema):
    participant_id = ma.fields.Str(attribute="id", dump_only=True)
    display_name = ma.fields.Str(dump_only=True)
    publishing = ma.fields.Bool(dump_only=True)
    state = ma.fields.Str(dump_only=True)


class AcceptedSchema(Schema):
    """An empty 202 body: the work is queued."""


class RequestAcceptedSchema(Schema):
    request_id = ma.fields.Str(required=True, metadata={"description": "Echoed in the sdpAnswer or error message."})
