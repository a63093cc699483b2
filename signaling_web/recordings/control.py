"""What the recording routes do before the workers take over: check, record the intent, enqueue."""

from __future__ import annotations

from media_tasks.dispatch import TaskQueue
from models import Endpoint, Participant, Recording
from models.errors import NotPublishing, ParticipantNotFound, RecordingNotFound
from models.recording import ACTIVE, stream_of, uri_for
from settings import Settings
from signaling_web import admission


def start(
    settings: Settings, tasks: TaskQueue, session_id: str, participant_id: str, name: str, profile: str
) -> Recording:
    """A `starting` recording of the participant's publication `name`; the worker creates the recorder.

    404 for a participant not of this session, 409 for a closed session or a publication not being
    published. Cost: three reads (session, participant, its endpoint record), one insert, one task."""
    admission.get_open_session(session_id)
    participant = Participant.find_in(session_id, participant_id)
    if participant is None:
        raise ParticipantNotFound()
    if not participant.is_active or Endpoint.stored_kurento(participant_id, stream_of(name)).kurento is None:
        raise NotPublishing(participant_id, name)
    recording = Recording.create(
        session_id, participant_id, name, profile, lambda rid: uri_for(settings, session_id, rid, profile)
    )
    tasks.start_recording(session_id, recording.id)
    return recording


def get(session_id: str, recording_id: str) -> Recording:
    admission.get_session(session_id)
    recording = Recording.find_in(session_id, recording_id)
    if recording is None:
        raise RecordingNotFound()
    return recording


def all_in(session_id: str) -> list[Recording]:
    admission.get_session(session_id)
    return Recording.all_in(session_id)


def stop(tasks: TaskQueue, session_id: str, recording_id: str) -> None:
    """Enqueues the stop of a running recording; one that has ended already is left as it is."""
    recording = get(session_id, recording_id)
    if recording.state in ACTIVE:
        tasks.stop_recording(session_id, recording_id, "stopped")
