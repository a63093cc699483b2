from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from settings import Settings
from signaling_web.extensions import Schema
from signaling_web.schemas import ParticipantSummarySchema
from signaling_web.validation import validate_candidate, validate_name, validate_sdp


def _settings() -> Settings:
    return current_app.extensions["signaling_settings"]


class JoinSchema(Schema):
    display_name = ma.fields.Str(required=True, validate=[ma.validate.Length(min=1, max=64), validate_name])
    join_token = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=256))


class JoinedSchema(Schema):
    participant_id = ma.fields.Str()
    token = ma.fields.Str(metadata={"description": "Send as Authorization: Bearer <token>."})
    participants = ma.fields.List(ma.fields.Nested(ParticipantSummarySchema))


STREAM_DOC = {"description": '"publish" for own media, or the participant_id of a publisher to receive.'}


class OfferSchema(Schema):
    stream = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=64), metadata=STREAM_DOC)
    sdp = ma.fields.Str(required=True)

    @ma.validates("sdp")
    def _sdp(self, value: str, **_kwargs: Any) -> None:
        validate_sdp(value, _settings().max_sdp_bytes)


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
    stream = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=64), metadata=STREAM_DOC)
    candidate = ma.fields.Nested(IceCandidateSchema, load_default=None)
    candidates = ma.fields.List(
        ma.fields.Nested(IceCandidateSchema), load_default=None, validate=ma.validate.Length(min=1, max=100)
    )

    @ma.validates_schema
    def _one_or_many(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if (data.get("candidate") is None) == (data.get("candidates") is None):
            raise ma.ValidationError("Give exactly one of candidate or candidates.", "candidate")
