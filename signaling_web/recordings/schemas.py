from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma

from models import Recording
from models.recording import PROFILES
from signaling_web.extensions import Schema

NAME = r"[a-z0-9_-]{1,32}"


class RecordingCreateSchema(Schema):
    participant_id = ma.fields.Str(required=True, validate=ma.validate.Length(min=1, max=64))
    name = ma.fields.Str(
        load_default="main",
        validate=ma.validate.Regexp(f"^{NAME}$", error="Must match {regex}."),
        metadata={"description": 'The publication: "main" (stream "publish") unless another is named.'},
    )
    profile = ma.fields.Str(
        load_default="webm",
        validate=ma.validate.OneOf(list(PROFILES)),
        metadata={"description": "webm (VP8 and Opus), mp4 (H.264 and AAC) or webm-audio (Opus only)."},
    )


def _when(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")


DATE = {"type": "string", "format": "date-time", "nullable": True, "description": "UTC, ISO 8601; null until then."}


class RecordingCreatedSchema(Schema):
    recording_id = ma.fields.Str(attribute="id")
    state = ma.fields.Str(metadata={"description": '"starting" in this answer.'})
    participant_id = ma.fields.Str()
    name = ma.fields.Str()
    profile = ma.fields.Str()
    uri = ma.fields.Str(metadata={"description": "RECORDINGS_URI/<session_id>/<recording_id>.<ext>"})


class RecordingSchema(RecordingCreatedSchema):
    state = ma.fields.Str(metadata={"enum": ["starting", "recording", "stopped", "failed"]})
    started_at = ma.fields.Method("_started_at", metadata=DATE)
    stopped_at = ma.fields.Method("_stopped_at", metadata=DATE)
    reason = ma.fields.Str(
        allow_none=True,
        metadata={
            "enum": ["stopped", "unpublished", "left", "sessionClosed", "mediaServerLost", "error", None],
            "description": "Why it ended; null while it runs.",
        },
    )

    def _started_at(self, recording: Recording) -> str | None:
        return _when(recording.started_at)

    def _stopped_at(self, recording: Recording) -> str | None:
        return _when(recording.stopped_at)


class RecordingListSchema(Schema):
    recordings = ma.fields.List(ma.fields.Nested(RecordingSchema), metadata={"description": "Oldest first."})
