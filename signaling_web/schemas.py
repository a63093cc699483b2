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


class IceServerSchema(Schema):
    """An RTCIceServer, to pass as is in RTCPeerConnection's `iceServers`."""

    urls = ma.fields.List(ma.fields.Str(), dump_only=True)
    username = ma.fields.Str(dump_only=True, metadata={"description": 'TURN: "<unix expiry>:<participant_id>".'})
    credential = ma.fields.Str(dump_only=True, metadata={"description": "TURN: base64(HMAC-SHA1(secret, username))."})


ICE_SERVERS_DOC = {
    "description": "STUN/TURN servers for this participant's peer connections: ICE_SERVERS, then TURN_URLS with "
    "credentials that expire after TURN_TTL_S (rejoin to get fresh ones)."
}


def ice_servers_field() -> ma.fields.List:
    return ma.fields.List(ma.fields.Nested(IceServerSchema), dump_only=True, metadata=ICE_SERVERS_DOC)


class RejoinedSchema(Schema):
    """A 202 body: fresh media is being prepared."""

    ice_servers = ice_servers_field()


ROLE_DOC = {
    "description": "`publisher` sends and receives; `subscriber` only receives (an offer on its own stream "
    "is refused with 403); `moderator` publishes and may remove participants and close the session.",
}
METADATA_DOC = {"description": "Any JSON object, at most 4 KiB; shown to everyone with the participant."}
