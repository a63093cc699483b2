from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from signaling_web.extensions import Schema
from signaling_web.schemas import ParticipantSummarySchema
from signaling_web.validation import validate_name


class SessionCreateSchema(Schema):
    name = ma.fields.Str(load_default="", validate=[ma.validate.Length(max=128), validate_name])
    max_participants = ma.fields.Int(
        load_default=None, allow_none=True, strict=True, metadata={"description": "1 to 256; 16 when omitted."}
    )

    @ma.validates("max_participants")
    def _within_limit(self, value: int | None, **_kwargs: Any) -> None:
        limit = current_app.extensions["signaling_settings"].max_participants_limit
        if value is not None and not 1 <= value <= limit:
            raise ma.ValidationError(f"Must be between 1 and {limit}.")


class SessionCreatedSchema(Schema):
    session_id = ma.fields.Str(attribute="id")
    join_token = ma.fields.Str()
    name = ma.fields.Str()
    state = ma.fields.Str()


class SessionSchema(Schema):
    session_id = ma.fields.Str(attribute="id")
    name = ma.fields.Str()
    state = ma.fields.Str()
    participants = ma.fields.List(ma.fields.Nested(ParticipantSummarySchema))
