"""Recordings of publications (DESIGN.md, "Recording"): API key, or a moderator of the session."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from models import Recording
from signaling_web import access
from signaling_web.dispatch import task_queue
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    EXAMPLES,
    INVALID,
    NO_SUCH_PARTICIPANT,
    NO_SUCH_RECORDING,
    NO_SUCH_SESSION,
    NOT_PUBLISHING,
    errors,
)
from signaling_web.recordings import control
from signaling_web.recordings.schemas import (
    RecordingCreatedSchema,
    RecordingCreateSchema,
    RecordingListSchema,
    RecordingSchema,
)
from signaling_web.schemas import AcceptedSchema

blp = Blueprint(
    "recordings",
    __name__,
    url_prefix="/api/v1/sessions/<session_id>/recordings",
    description="Recording publications with the media server (API key or a moderator)",
)


@blp.route("")
class Recordings(MethodView):
    @blp.arguments(RecordingCreateSchema, example=EXAMPLES["record"])
    @blp.response(201, RecordingCreatedSchema, example=EXAMPLES["recording_created"])
    @errors(blp, NO_SUCH_PARTICIPANT, NOT_PUBLISHING, INVALID, post=True)
    @access.recording_controller
    def post(self, args: dict[str, Any], session_id: str) -> Recording:
        """Record a publication

        The media server writes it to RECORDINGS_URI/<session_id>/<recording_id>.<ext>. Everyone in the
        session gets `recordingStarted` once media is being written (state `recording`), and
        `recordingStopped {recording_id, reason}` when it ends: stopped here, or the publisher
        unpublished or left, the session closed, the media server was lost, or it reported an error."""
        settings = current_app.extensions["signaling_settings"]
        return control.start(settings, task_queue(), session_id, args["participant_id"], args["name"], args["profile"])

    @blp.response(200, RecordingListSchema, example=EXAMPLES["recording_list"])
    @errors(blp, NO_SUCH_SESSION)
    @access.recording_controller
    def get(self, session_id: str) -> dict[str, Any]:
        """List the session's recordings, oldest first"""
        return {"recordings": control.all_in(session_id)}


@blp.route("/<recording_id>")
class RecordingById(MethodView):
    @blp.response(200, RecordingSchema, example=EXAMPLES["recording"])
    @errors(blp, NO_SUCH_RECORDING)
    @access.recording_controller
    def get(self, session_id: str, recording_id: str) -> Recording:
        """Read a recording: its state (starting, recording, stopped, failed), times and why it ended"""
        return control.get(session_id, recording_id)


@blp.route("/<recording_id>/stop")
class RecordingStop(MethodView):
    @blp.response(202, AcceptedSchema, example=EXAMPLES["accepted"])
    @errors(blp, NO_SUCH_RECORDING, post=True)
    @access.recording_controller
    def post(self, session_id: str, recording_id: str) -> dict[str, Any]:
        """Stop a recording

        Its state becomes `stopped` (reason `stopped`) once the media server has finished the file, and
        everyone gets `recordingStopped`. Stopping one that has ended changes nothing."""
        control.stop(task_queue(), session_id, recording_id)
        return {}
