"""Recording a publication with a Kurento RecorderEndpoint (DESIGN.md, "Recording").

A recording is accepted by the web tier (models.recording, state `starting`); `start` creates the
recorder beside the publish endpoint in one KMS transaction (create, subscribe to its events,
connect the publication to it, record) and stores it; KMS's `Recording` event makes it
`recording` and announces `recordingStarted`. `stop` asks the media server to finish the file
(`stopAndWait` answers once it is written), releases the recorder and announces
`recordingStopped {recording_id, reason}`. The publisher leaving, the session closing and the
media server being lost stop it with that reason; a renegotiated publication is connected to the
same recorder (`follow_publication`), so the recording goes on in the same file.

Every function may run on any worker, twice: the conditional updates of models.recording decide
who acts, and `announced` who has told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kurento
from media_tasks import kms_sessions
from media_tasks.kms_pool import pipeline_of, release_quietly, same_server
from messaging import messages, webhook_events
from messaging.publisher import get_publisher
from models import PUBLISH, Endpoint, KurentoRef, Recording
from models.recording import MAIN, PROFILES, stream_of
from settings import Settings

log = logging.getLogger(__name__)


def name_of(stream: str) -> str | None:
    """The publication name of an Endpoint stream; None for a subscription."""
    if stream == PUBLISH:
        return MAIN
    prefix = f"{PUBLISH}:"
    return stream[len(prefix) :] if stream.startswith(prefix) else None


# -- start ------------------------------------------------------------------------------------------------


def start(settings: Settings, session_id: str, recording_id: str) -> None:
    """Creates, connects and starts the recorder of an accepted recording (nothing if it has one, or ended).

    Cost: two reads (the recording, the publish endpoint), one KMS transaction, one write (the claim)
    and one write marking the publication recorded, which reads its endpoint to catch a re-offer that
    replaced it meanwhile.
    """
    recording = Recording.find(recording_id)
    if recording is None or recording.state != "starting" or recording.kurento is not None:
        return
    stream = stream_of(recording.name)
    source = Endpoint.stored_kurento(recording.participant_id, stream).kurento
    if source is None:
        end(settings, recording_id, "unpublished")
        return
    try:
        recorder = _create_recorder(settings, recording, source)
    except kurento.KurentoUnavailable:
        raise  # retried by the task
    except kurento.KurentoError as exc:
        log.warning("recording %s could not start: %s", recording_id, exc)
        end(settings, recording_id, "error", failed=True)
        return
    if not Recording.claim_recorder(recording_id, recorder):
        release_quietly(recorder)  # a stop came first (or a re-run stored its own)
        return
    kms_sessions.register_own(recorder.client)  # its events survive this worker (a takeover)
    # Marks the publication recorded (its re-offers then look for recorders to follow) and reads its
    # endpoint in the same write: a re-offer that did not see the mark is caught up here.
    current = Endpoint.mark_recorded(recording.participant_id, stream)
    if current is not None and current != source:
        _connect_quietly(KurentoRef.decode(current).proxy(), [recorder])


def _create_recorder(settings: Settings, recording: Recording, source: str) -> kurento.RecorderEndpoint:
    pipeline = pipeline_of(source)
    if pipeline is None:
        raise kurento.KurentoError(40101, f"no pipeline in {source}")
    tx = pipeline.client.transaction()
    created = tx.create(
        "RecorderEndpoint",
        media_pipeline=pipeline,
        uri=recording.uri,
        media_profile=PROFILES[recording.profile][0],
        stop_on_end_of_stream=False,
    )
    for event_type, handler in event_handlers(settings, recording.session_id, recording.id).items():
        tx.subscribe(created, event_type, handler)
    tx.invoke(KurentoRef.decode(source).proxy(), "connect", sink=created)
    tx.invoke(created, "record")
    try:
        tx.commit()
    except kurento.KurentoError as exc:
        if exc.failed_index:  # the recorder was created: nothing is rolled back
            release_quietly(kurento.RecorderEndpoint(pipeline.client, exc.completed[created.index]))
        raise
    return tx.resolve(created, kurento.RecorderEndpoint)


def event_handlers(settings: Settings, session_id: str, recording_id: str) -> dict[str, Callable[[dict], None]]:
    """KMS events of a recorder: `Recording` starts it, `Error` fails it. `Stopped` needs nothing:
    the stop waits for it (stopAndWait) before announcing."""

    def on_recording(_data: dict) -> None:
        if Recording.mark_recording(recording_id):
            announce_started(settings, recording_id)

    def on_error(data: dict) -> None:
        log.warning("recorder of %s reported an error: %s", recording_id, data.get("description"))
        end(settings, recording_id, "error", failed=True)

    return {"Recording": on_recording, "Error": on_error}


def listen_recorder_events(settings: Settings, client: kurento.KurentoClient, recording: Recording) -> None:
    """After taking a KMS session over: the subscriptions exist server-side, only routing is needed."""
    for event_type, handler in event_handlers(settings, recording.session_id, recording.id).items():
        client.add_listener(recording.kurento.id, event_type, handler)


# -- follow -----------------------------------------------------------------------------------------------


def follow_stream(settings: Settings, session_id: str, participant_id: str, stream: str, endpoint: Any) -> None:
    """`follow_publication` for a stream that is a publication; nothing (and no read) for a subscription."""
    name = name_of(stream)
    if name is not None:
        follow_publication(settings, session_id, participant_id, name, endpoint)


def follow_publication(
    settings: Settings, session_id: str, participant_id: str, name: str, new_endpoint: kurento.MediaElement
) -> None:
    """Connects a publication's new publish endpoint (a renegotiation, a publish after a rejoin) to the
    recorders of its running recordings, so they go on in the same files. Cost: one projected read;
    with recordings, one KMS round trip."""
    recorders = [KurentoRef.decode(ref).proxy() for ref in Recording.active_recorders_of(participant_id, name)]
    _connect_quietly(new_endpoint, [r for r in recorders if same_server(r, new_endpoint)])


def _connect_quietly(source: kurento.MediaObject, recorders: list[kurento.MediaObject]) -> None:
    if not recorders:
        return
    tx = source.client.transaction()
    for recorder in recorders:
        tx.invoke(source, "connect", sink=recorder)
    try:
        tx.commit()
    except kurento.KurentoUnavailable:
        raise
    except kurento.KurentoError as exc:
        log.info("could not connect %s to its recorders: %s", source.id, exc)


# -- stop -------------------------------------------------------------------------------------------------


def stop(settings: Settings, session_id: str, recording_id: str, reason: str = "stopped") -> None:
    """Asks the media server to finish the file, then releases the recorder and announces the stop."""
    Recording.ask_stop(recording_id, reason)
    for _attempt in range(5):
        recording = Recording.find(recording_id)
        if recording is None:
            return
        if recording.state not in ("starting", "recording"):
            announce_stopped(settings, recording_id)  # a re-run: tell what the first run may not have
            return
        recorder = recording.kurento
        if recorder is not None:
            _finish_file(recorder)
        if Recording.mark_ended(recording_id, recorder, failed=False, reason=reason):
            release_quietly(recorder)
            announce_stopped(settings, recording_id)
            return
    log.warning("recording %s changed under five stops in a row", recording_id)


def _finish_file(recorder: kurento.MediaObject) -> None:
    try:
        kurento.RecorderEndpoint(recorder.client, recorder.id).stop_and_wait()
    except kurento.KurentoUnavailable:
        raise
    except kurento.KurentoError as exc:  # gone with its pipeline, say: nothing left to finish
        log.info("stopAndWait on %s failed: %s", recorder.id, exc)


def end(settings: Settings, recording_id: str, reason: str, *, failed: bool = False, release: bool = True) -> None:
    """Ends a recording without asking the media server to finish the file (it failed, or never had a
    recorder); `release` False when the media server is gone, recorder and all."""
    for _attempt in range(5):
        recording = Recording.find(recording_id)
        if recording is None:
            return
        if recording.state not in ("starting", "recording"):
            break
        if Recording.mark_ended(recording_id, recording.kurento, failed=failed, reason=reason):
            if release:
                release_quietly(recording.kurento)
            break
    announce_stopped(settings, recording_id)


def stop_all_of(settings: Settings, session_id: str, participant_id: str, reason: str) -> None:
    """The participant's recordings stop (it leaves): one indexed read, and a stop for each."""
    for recording_id in Recording.active_ids(session_id, participant_id):
        stop(settings, session_id, recording_id, reason)


def stop_all_in(settings: Settings, session_id: str, reason: str = "sessionClosed") -> None:
    """Every recording of the session stops (it closes), before its pipeline is released."""
    for recording_id in Recording.active_ids(session_id):
        stop(settings, session_id, recording_id, reason)


def lose_all_in(settings: Settings, session_id: str) -> None:
    """The session's media server is gone, and its recorders with it: they fail (mediaServerLost)."""
    for recording_id in Recording.active_ids(session_id):
        end(settings, recording_id, "mediaServerLost", failed=True, release=False)


def stop_publication(settings: Settings, session_id: str, participant_id: str, name: str, reason: str) -> None:
    """Hook for unpublishing one publication (`DELETE …/streams/{name}`): its recordings stop with `reason`."""
    for recording_id in Recording.active_ids(session_id, participant_id):
        recording = Recording.find(recording_id)
        if recording is not None and recording.name == name:
            stop(settings, session_id, recording_id, reason)


# -- announcements ----------------------------------------------------------------------------------------


def announce_started(settings: Settings, recording_id: str) -> None:
    recording = Recording.find(recording_id)
    if recording is None or Recording.was_announced(recording_id, "started"):
        return
    get_publisher(settings).to_session(
        recording.session_id, messages.recording_started(recording.id, recording.participant_id, recording.name)
    )
    webhook_events.recording_started(
        settings, recording.session_id, recording.participant_id, _event_data(recording, with_reason=False)
    )
    Recording.mark_announced(recording_id, "started")


def announce_stopped(settings: Settings, recording_id: str) -> None:
    recording = Recording.find(recording_id)
    if recording is None or recording.reason is None or Recording.was_announced(recording_id, "stopped"):
        return
    get_publisher(settings).to_session(recording.session_id, messages.recording_stopped(recording.id, recording.reason))
    webhook_events.recording_stopped(
        settings, recording.session_id, recording.participant_id, _event_data(recording, with_reason=True)
    )
    Recording.mark_announced(recording_id, "stopped")


def _event_data(recording: Recording, with_reason: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "recording_id": recording.id,
        "name": recording.name,
        "profile": recording.profile,
        "uri": recording.uri,
    }
    if with_reason:
        data.update(state=recording.state, reason=recording.reason)
    return data
