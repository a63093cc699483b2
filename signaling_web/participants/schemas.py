from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from settings import Settings
from signaling_web.extensions import Schema
from signaling_web.schemas import METADATA_DOC, ROLE_DOC, ParticipantSummarySchema, ice_servers_field
from signaling_web.validation import validate_candidate, validate_metadata, validate_name, validate_sdp


def _settings() -> Settings:
    return current_app.extensions["signaling_settings"]


class JoinSchema(Schema):
    display_name = ma.fields.Str(
        load_default=None,
        validate=[ma.validate.Length(min=1, max=64), validate_name],
        metadata={"description": "Required, unless the join token is a minted one that names the participant."},
    )
    join_token = ma.fields.Str(
        required=True,
        validate=ma.validate.Length(min=1, max=256),
        metadata={
            "description": "The session's shared join token (joins as a publisher), or a single-use token "
            "minted by POST /sessions/{sid}/tokens (its role; its display_name and metadata win over the body's)."
        },
    )
    metadata = ma.fields.Dict(load_default=None, validate=validate_metadata, metadata=METADATA_DOC)


class JoinedSchema(Schema):
    participant_id = ma.fields.Str()
    token = ma.fields.Str(metadata={"description": "Send as Authorization: Bearer <token>."})
    role = ma.fields.Str(metadata=ROLE_DOC)
    token_expires_at = ma.fields.DateTime(
        metadata={"description": "When `token` expires (TOKEN_TTL_S after the join); join again after."}
    )
    participants = ma.fields.List(ma.fields.Nested(ParticipantSummarySchema))
    ice_servers = ice_servers_field()


STREAM_DOC = {
    "description": '"publish" (= "publish:main") for own media, "publish:<name>" for another publication of '
    "one's own (name: [a-z0-9_-]{1,32}, at most 4 publications); \"<participant_id>\" (that publisher's main) or "
    '"<participant_id>:<name>" to receive. A malformed name is refused with 422.',
    "example": "publish:screen",
}


class OfferSchema(Schema):
    stream = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=80), metadata=STREAM_DOC)
    sdp = ma.fields.Str(
        required=True,
        metadata={
            "description": "At most MAX_SDP_BYTES (64 KiB) and MAX_MEDIA_SECTIONS (32) m-lines; "
            "more is refused with 422."
        },
    )

    @ma.validates("sdp")
    def _sdp(self, value: str, **_kwargs: Any) -> None:
        settings = _settings()
        validate_sdp(value, settings.max_sdp_bytes, settings.max_media_sections)


class IceCandidateSchema(Schema):
    candidate = ma.fields.Str(required=True)
    sdpMid = ma.fields.Str(load_default=None, allow_none=True, validate=ma.validate.Length(max=64))
    sdpMLineIndex = ma.fields.Int(
        load_default=None, allow_none=True, strict=True, validate=ma.validate.Range(min=0, max=1023)
    )
    usernameFragment = ma.fields.Str(load_default=None, allow_none=True, validate=ma.validate.Length(max=256))

    @ma.validates("candidate")
    def _candidate(self, value: str, **_kwargs: Any) -> None:
        validate_candidate(value, _settings().max_candidate_bytes)

    @ma.validates_schema
    def _placed(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("sdpMid") is None and data.get("sdpMLineIndex") is None:
            raise ma.ValidationError("sdpMid or sdpMLineIndex is required.", "sdpMid")


class CandidatesSchema(Schema):
    stream = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=80), metadata=STREAM_DOC)
    candidate = ma.fields.Nested(IceCandidateSchema, load_default=None)
    candidates = ma.fields.List(
        ma.fields.Nested(IceCandidateSchema),
        load_default=None,
        validate=ma.validate.Length(min=1),
        metadata={
            "description": "At most MAX_CANDIDATES_PER_REQUEST (100); more is refused with 422. Of the candidates sent "
            "before a stream's offer is processed, MAX_CANDIDATES_PER_STREAM (200) are kept; later ones are dropped "
            "with an `error` message (code 413)."
        },
    )

    @ma.validates("candidates")
    def _few_enough(self, value: list[dict[str, Any]] | None, **_kwargs: Any) -> None:
        limit = _settings().max_candidates_per_request
        if value is not None and len(value) > limit:
            raise ma.ValidationError(f"At most {limit} candidates per request.")

    @ma.validates_schema
    def _one_or_many(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if (data.get("candidate") is None) == (data.get("candidates") is None):
            raise ma.ValidationError("Give exactly one of candidate or candidates.", "candidate")
