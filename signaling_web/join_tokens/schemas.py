from __future__ import annotations

from typing import Any

import marshmallow as ma

from models import ParticipantRole
from signaling_web.extensions import Schema
from signaling_web.schemas import METADATA_DOC, ROLE_DOC
from signaling_web.sessions.schemas import bandwidth_field, check_send_range
from signaling_web.validation import validate_metadata, validate_name

DEFAULT_TTL_S = 3600
MAX_TTL_S = 86400


class MintTokenSchema(Schema):
    role = ma.fields.Str(
        load_default=ParticipantRole.PUBLISHER.value,
        validate=ma.validate.OneOf([role.value for role in ParticipantRole]),
        metadata=ROLE_DOC,
    )
    display_name = ma.fields.Str(
        load_default=None,
        validate=[ma.validate.Length(min=1, max=64), validate_name],
        metadata={"description": "The participant's name; wins over the join body's."},
    )
    metadata = ma.fields.Dict(
        load_default=None,
        validate=validate_metadata,
        metadata={"description": METADATA_DOC["description"] + " Wins over the join body's."},
    )
    ttl_s = ma.fields.Int(
        load_default=DEFAULT_TTL_S,
        strict=True,
        validate=ma.validate.Range(min=1, max=MAX_TTL_S),
        metadata={"description": f"Seconds the token may be used in (1 to {MAX_TTL_S}; {DEFAULT_TTL_S} when omitted)."},
    )
    # This participant's limits instead of the session's (each omitted one: the session's).
    max_video_send_bandwidth = bandwidth_field(
        "kbps: maxVideoSendBandwidth on this participant's subscription endpoints (what the media server "
        "sends it), instead of the session's.",
        600,
    )
    min_video_send_bandwidth = bandwidth_field(
        "kbps: minVideoSendBandwidth on this participant's subscription endpoints, instead of the session's.", 100
    )
    max_video_recv_bandwidth = bandwidth_field(
        "kbps: maxVideoRecvBandwidth on this participant's publish endpoints (what it may send), "
        "instead of the session's.",
        1000,
    )

    @ma.validates_schema
    def _send_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        check_send_range(data)


class MintedTokenSchema(Schema):
    join_token = ma.fields.Str(
        metadata={"description": "Single use: the first join with it is admitted, any later one gets 409."}
    )
    role = ma.fields.Str(metadata=ROLE_DOC)
    expires_at = ma.fields.DateTime(metadata={"description": "After this, a join with it gets 403."})


class RotatedJoinTokenSchema(Schema):
    join_token = ma.fields.Str(
        metadata={"description": "The session's new shared join token; the previous one is refused (403) from now on."}
    )
