from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import current_app

from signaling_web.extensions import Schema

MAX_SEQ = 2**63 - 1


class PollArgsSchema(Schema):
    after = ma.fields.Int(
        # Bounded to what MongoDB stores (8-byte ints): a larger number was a 500 (found by schemathesis).
        load_default=0,
        validate=ma.validate.Range(min=0, max=MAX_SEQ),
        metadata={"description": "The last seq the client has processed; older messages are dropped.", "example": 40},
    )
    wait = ma.fields.Float(
        load_default=0.0,
        validate=ma.validate.Range(min=0, max=30),
        metadata={"description": "Seconds to hold the request until a message arrives (0 to 30).", "example": 25},
    )
    limit = ma.fields.Int(
        load_default=100,
        validate=ma.validate.Range(min=1, max=500),
        metadata={"description": "Most messages in one answer.", "example": 100},
    )


class PolledSchema(Schema):
    messages = ma.fields.List(
        ma.fields.Dict(),
        metadata={
            "description": "Each has seq and type, plus the type's fields. Besides the types of the contract, "
            "the service tells of gaps in delivery: `messagesDropped {count}` (the participant's queue "
            "overflowed PARTICIPANT_QUEUE_MAX_LENGTH or PARTICIPANT_QUEUE_MAX_BYTES and dropped its `count` "
            "oldest messages, which came before this one) and `resync {reason}` (`queueExpired`: the queue "
            "was deleted while the client stayed away longer than PARTICIPANT_QUEUE_EXPIRES_S, so anything "
            "sent meanwhile is lost). After either, re-read GET /sessions/{sid} and renegotiate the streams "
            "whose sdpAnswer or candidates may be missing. Publications (several per participant, named): "
            "`streamPublished {participant_id, name, audio, video}` when one starts or the kinds its offer "
            "sends change (a re-offer that sends the same keeps its subscribers connected and says nothing), "
            "`streamUnpublished {participant_id, name, reason}` (`unpublished`, `left`, `rejoined`), "
            "`streamMuted {participant_id, name, audio, video}` (each true while the service does not "
            "forward that kind to the publication's subscribers)."
        },
    )
    last_seq = ma.fields.Int()


class SendMessageSchema(Schema):
    payload = ma.fields.Dict(required=True, metadata={"description": "Any JSON object, at most 16 KiB."})
    to = ma.fields.Str(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "A participant_id for a direct message; omit to broadcast."},
    )

    @ma.validates("payload")
    def _size(self, value: dict[str, Any], **_kwargs: Any) -> None:
        limit = current_app.extensions["signaling_settings"].max_payload_bytes
        if len(json.dumps(value, separators=(",", ":")).encode()) > limit:
            raise ma.ValidationError(f"payload is larger than {limit} bytes.")
