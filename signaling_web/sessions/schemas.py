from __future__ import annotations

import base64
import re
from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import current_app

from models import Session, SessionState
from signaling_web.extensions import Schema
from signaling_web.schemas import ParticipantSummarySchema
from signaling_web.validation import validate_name


def bandwidth_field(description: str, example: int) -> ma.fields.Int:
    """A bandwidth limit in kbps (a session's default, or a minted token's for its participant)."""
    return ma.fields.Int(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=ma.validate.Range(min=1, max=100_000),
        metadata={"description": description, "example": example},
    )


def check_send_range(data: dict[str, Any]) -> None:
    low, high = data.get("min_video_send_bandwidth"), data.get("max_video_send_bandwidth")
    if low is not None and high is not None and low > high:
        raise ma.ValidationError("Must not exceed max_video_send_bandwidth.", "min_video_send_bandwidth")


class SessionCreateSchema(Schema):
    name = ma.fields.Str(load_default="", validate=[ma.validate.Length(max=128), validate_name])
    max_participants = ma.fields.Int(
        load_default=None, allow_none=True, strict=True, metadata={"description": "1 to 256; 16 when omitted."}
    )

    max_video_send_bandwidth = bandwidth_field(
        "kbps: the media server's maxVideoSendBandwidth on every subscription endpoint "
        "(what it sends a subscriber); its own default (500) when omitted.",
        1500,
    )
    min_video_send_bandwidth = bandwidth_field(
        "kbps: minVideoSendBandwidth on every subscription endpoint (its default: 100).", 150
    )
    max_video_recv_bandwidth = bandwidth_field(
        "kbps: maxVideoRecvBandwidth on every publish endpoint (what a publisher may send; unlimited when omitted).",
        2500,
    )

    @ma.validates_schema
    def _send_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        check_send_range(data)

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


class ListCursor(ma.fields.Field):
    """An opaque position in the listing: base64url of the last listed session's list_key
    (models.session.list_key). Not secret: it names a session the caller has just read."""

    def _serialize(self, value: str | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    def _deserialize(self, value: object, attr: str | None, data: Any, **kwargs: Any) -> str:
        key = None
        if isinstance(value, str) and len(value) <= MAX_CURSOR_CHARS:
            try:
                key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                key = None
        if key is None or not LIST_KEY.fullmatch(key):
            raise ma.ValidationError("Not a cursor of this listing; pass next_cursor as it came.")
        return key


MAX_CURSOR_CHARS = 128
LIST_KEY = re.compile(r"\d{13}\.[0-9a-f]{32}")
STATES = [s.value for s in SessionState]


class SessionListArgsSchema(Schema):
    state = ma.fields.Str(
        load_default=None,
        validate=ma.validate.OneOf(STATES),
        metadata={"description": "Only sessions in this state; all when omitted.", "example": "open"},
    )
    limit = ma.fields.Int(
        load_default=50,
        validate=ma.validate.Range(min=1, max=100),
        metadata={"description": "Most sessions in one page (1 to 100).", "example": 50},
    )
    cursor = ListCursor(
        load_default=None,
        metadata={
            "description": "`next_cursor` of the previous page; omit for the first (newest) page.",
            "type": "string",
            "example": "MTc2NzI1ODAwMDAwMC42YTFmMGMyZTliN2Q0ZTVmYTNjOGQxYjJlNGY2MDc4OQ",
        },
    )


class SessionListItemSchema(Schema):
    session_id = ma.fields.Str(attribute="id")
    name = ma.fields.Str()
    state = ma.fields.Str()
    participant_count = ma.fields.Method(
        "_participant_count",
        metadata={"type": "integer", "description": "Participants holding a place (joined); 0 once closed."},
    )
    created_at = ma.fields.Method(
        "_created_at", metadata={"type": "string", "format": "date-time", "description": "UTC, ISO 8601."}
    )

    def _participant_count(self, session: Session) -> int:
        # A close marks everyone left without releasing each place: the counter is only kept up while open.
        return 0 if session.state == SessionState.CLOSED else session.participant_count

    def _created_at(self, session: Session) -> str:
        return session.created_at.replace(tzinfo=UTC).isoformat(timespec="milliseconds")


class SessionListSchema(Schema):
    sessions = ma.fields.List(ma.fields.Nested(SessionListItemSchema))
    next_cursor = ListCursor(
        attribute="next_after",
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page.", "type": "string"},
    )
