"""Recording a publication through the real service and the signaling-mode emulator (DESIGN.md, "Recording").

Every route with its answers, the messages everyone gets, the recorder on the media server (created in
the publication's pipeline, fed by its publish endpoint, released when it stops), the stop reasons
(stop, leave, session close) and the documented refusals. The media server's loss is in
tests/faults/test_recording_loss.py, a real recorded file in test_recording_media.py.
"""

from __future__ import annotations

import pytest

import kurento
from models import Recording, Session
from tests.conftest import read_fixture
from tests.support.api import Api, Member
from tests.support.checks import assert_error, wait_until

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")


@pytest.fixture
def kms(kms_url):
    client = kurento.KurentoClient(kms_url, request_timeout=10.0)
    yield client
    client.close()


def recordings_url(api: Api, session_id: str) -> str:
    return f"{api.base}/api/v1/sessions/{session_id}/recordings"


def record(api: Api, session_id: str, **body) -> dict:
    response = api.http.post(recordings_url(api, session_id), json=body, headers=api.key_headers)
    assert response.status_code == 201, response.text
    return response.json()


def read(api: Api, session_id: str, recording_id: str) -> dict:
    response = api.http.get(f"{recordings_url(api, session_id)}/{recording_id}", headers=api.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


def stop(api: Api, session_id: str, recording_id: str):
    return api.http.post(f"{recordings_url(api, session_id)}/{recording_id}/stop", headers=api.key_headers)


def call(api: Api) -> tuple[dict, Member, Member]:
    """A session where alice publishes and bob watches the announcements."""
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    return session, alice, bob


def recorder_of(recording_id: str) -> kurento.MediaObject:
    recording = Recording.find(recording_id)
    assert recording is not None and recording.kurento is not None
    return recording.kurento


def on_kms(client: kurento.KurentoClient, object_id: str) -> bool:
    try:
        client.get_object(object_id)
        return True
    except kurento.ObjectNotFound:
        return False


def publish_endpoint_id(participant_id: str) -> str:
    from models import Endpoint

    stored = Endpoint.find(participant_id, "publish")
    assert stored is not None and stored.kurento is not None
    return stored.kurento.id


def test_record_read_list_and_stop(keyed, keyed_db, kms):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    created = record(keyed, sid, participant_id=alice.participant_id)
    rid = created["recording_id"]
    assert created["state"] == "starting" and created["name"] == "main" and created["profile"] == "webm"
    assert created["participant_id"] == alice.participant_id
    assert created["uri"].startswith("file:///") and created["uri"].endswith(f"/{sid}/{rid}.webm")

    started = bob.wait_type("recordingStarted", recording_id=rid)
    assert started == {**started, "participant_id": alice.participant_id, "name": "main"}
    alice.wait_type("recordingStarted", recording_id=rid)
    now = read(keyed, sid, rid)
    assert now["state"] == "recording" and now["started_at"] and now["stopped_at"] is None and now["reason"] is None

    # On the media server: a RecorderEndpoint in the session's pipeline, fed by alice's publish endpoint.
    recorder = recorder_of(rid)
    assert recorder.id.startswith(Session.find(sid).pipeline.id + "/") and recorder.id.endswith("RecorderEndpoint")
    assert kms.proxy(recorder.id).invoke("getUri") == created["uri"]
    assert kms.proxy(recorder.id).invoke("getState") == "START"
    sources = kms.proxy(recorder.id).invoke("getSourceConnections")
    assert {s["source"] for s in sources} == {publish_endpoint_id(alice.participant_id)}

    listed = keyed.http.get(recordings_url(keyed, sid), headers=keyed.key_headers)
    assert listed.status_code == 200 and [r["recording_id"] for r in listed.json()["recordings"]] == [rid]

    assert stop(keyed, sid, rid).status_code == 202
    stopped = bob.wait_type("recordingStopped", recording_id=rid)
    assert stopped["reason"] == "stopped"
    ended = read(keyed, sid, rid)
    assert ended == {**ended, "state": "stopped", "reason": "stopped"} and ended["stopped_at"]
    assert not on_kms(kms, recorder.id), "the recorder is released once it stopped"
    # A second stop changes nothing and announces nothing more.
    assert stop(keyed, sid, rid).status_code == 202
    alice.send({"after": "second stop"})
    bob.wait_type("message", payload={"after": "second stop"})
    assert [m for m in bob.inbox if m["type"] == "recordingStopped"] == [stopped]


@pytest.mark.parametrize(
    ("profile", "kurento_profile", "ext"), [("mp4", "MP4", "mp4"), ("webm-audio", "WEBM_AUDIO_ONLY", "webm")]
)
def test_profiles_choose_the_container(keyed, keyed_db, kms, profile, kurento_profile, ext):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    created = record(keyed, sid, participant_id=alice.participant_id, name="main", profile=profile)
    assert created["profile"] == profile and created["uri"].endswith(f".{ext}")
    bob.wait_type("recordingStarted", recording_id=created["recording_id"])
    recorder = recorder_of(created["recording_id"])
    description = kms.request("describe", {"object": recorder.id})
    assert description["qualifiedType"] == "kurento.RecorderEndpoint"
    assert kms.proxy(recorder.id).invoke("getUri").endswith(f".{ext}")
    assert kurento_profile in {"MP4", "WEBM_AUDIO_ONLY"}  # what the emulator accepted at create (40001 otherwise)


def test_a_recording_follows_its_publication_across_a_renegotiation(keyed, keyed_db, kms):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    rid = record(keyed, sid, participant_id=alice.participant_id)["recording_id"]
    bob.wait_type("recordingStarted", recording_id=rid)
    first = publish_endpoint_id(alice.participant_id)
    request_id = alice.offer(PUBLISH_SDP)  # a re-offer: a new publish endpoint replaces the first
    alice.wait_type("sdpAnswer", request_id=request_id)
    wait_until(lambda: publish_endpoint_id(alice.participant_id) != first, "the new publish endpoint stored")
    second = publish_endpoint_id(alice.participant_id)
    recorder = kms.proxy(recorder_of(rid).id)
    wait_until(
        lambda: {s["source"] for s in recorder.invoke("getSourceConnections")} == {second},
        "the recorder fed by the new publish endpoint",
    )
    assert read(keyed, sid, rid)["state"] == "recording", "the same recording goes on"


def test_a_recording_follows_its_publisher_across_a_rejoin(keyed, keyed_db, kms):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    rid = record(keyed, sid, participant_id=alice.participant_id)["recording_id"]
    bob.wait_type("recordingStarted", recording_id=rid)
    first = publish_endpoint_id(alice.participant_id)
    rejoined = keyed.http.post(f"{alice.base}/rejoin", headers=alice.headers)
    assert rejoined.status_code == 202, rejoined.text
    bob.wait_type("streamUnpublished", participant_id=alice.participant_id)
    recorder = kms.proxy(recorder_of(rid).id)
    wait_until(lambda: not recorder.invoke("getSourceConnections"), "the released endpoint no longer feeds it")
    alice.wait_type("sdpAnswer", request_id=alice.offer(PUBLISH_SDP))  # publishes again, fresh media
    second = publish_endpoint_id(alice.participant_id)
    assert second != first
    wait_until(
        lambda: {s["source"] for s in recorder.invoke("getSourceConnections")} == {second},
        "the recorder fed by the publication after the rejoin",
    )
    assert read(keyed, sid, rid)["state"] == "recording"
    assert not [m for m in bob.inbox if m["type"] == "recordingStopped"]


def test_the_publisher_leaving_stops_its_recordings(keyed, keyed_db, kms):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    rid = record(keyed, sid, participant_id=alice.participant_id)["recording_id"]
    bob.wait_type("recordingStarted", recording_id=rid)
    recorder = recorder_of(rid)
    assert alice.leave().status_code == 202
    assert bob.wait_type("recordingStopped", recording_id=rid)["reason"] == "left"
    ended = read(keyed, sid, rid)
    assert (ended["state"], ended["reason"]) == ("stopped", "left")
    assert not on_kms(kms, recorder.id)


def test_closing_the_session_stops_its_recordings(keyed, keyed_db):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    rid = record(keyed, sid, participant_id=alice.participant_id)["recording_id"]
    bob.wait_type("recordingStarted", recording_id=rid)
    assert keyed.http.delete(f"{keyed.base}/api/v1/sessions/{sid}", headers=keyed.key_headers).status_code == 202
    assert bob.wait_type("recordingStopped", recording_id=rid)["reason"] == "sessionClosed"
    ended = read(keyed, sid, rid)
    assert (ended["state"], ended["reason"]) == ("stopped", "sessionClosed")


def test_a_stop_before_the_recorder_exists_wins(keyed, keyed_db, kms):
    """Stop right after start (both tasks on the session's shard, in order): it ends, stopped, and
    no recorder is left behind on the media server."""
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    rid = record(keyed, sid, participant_id=alice.participant_id)["recording_id"]
    assert stop(keyed, sid, rid).status_code == 202
    assert bob.wait_type("recordingStopped", recording_id=rid)["reason"] == "stopped"
    assert read(keyed, sid, rid)["state"] == "stopped"
    pipeline = Session.find(sid).pipeline
    wait_until(
        lambda: not [c for c in kms.proxy(pipeline.id).invoke("getChildren") if c.endswith("RecorderEndpoint")],
        "no recorder left in the pipeline",
    )


def test_refusals(keyed, keyed_db):
    session, alice, bob = call(keyed)
    sid = session["session_id"]
    url = recordings_url(keyed, sid)
    headers = keyed.key_headers
    # Someone who is not publishing: 409.
    body = assert_error(keyed.http.post(url, json={"participant_id": bob.participant_id}, headers=headers), 409)
    assert bob.participant_id in body["message"]
    # A publication alice does not have: 409 too.
    assert_error(
        keyed.http.post(url, json={"participant_id": alice.participant_id, "name": "screen"}, headers=headers), 409
    )
    # Unknown participant, session or recording: 404.
    assert_error(keyed.http.post(url, json={"participant_id": "nobody"}, headers=headers), 404)
    assert_error(
        keyed.http.post(
            f"{keyed.base}/api/v1/sessions/nosuch/recordings", json={"participant_id": "x"}, headers=headers
        ),
        404,
    )
    assert_error(keyed.http.get(f"{keyed.base}/api/v1/sessions/nosuch/recordings", headers=headers), 404)
    assert_error(keyed.http.get(f"{url}/nosuch", headers=headers), 404)
    assert_error(keyed.http.post(f"{url}/nosuch/stop", headers=headers), 404)
    # Bad input: 422, naming the field.
    bad = {"participant_id": alice.participant_id, "profile": "avi"}
    assert "profile" in assert_error(keyed.http.post(url, json=bad, headers=headers), 422)["errors"]["json"]
    bad = {"participant_id": alice.participant_id, "name": "Not A Name"}
    assert "name" in assert_error(keyed.http.post(url, json=bad, headers=headers), 422)["errors"]["json"]
    assert "participant_id" in assert_error(keyed.http.post(url, json={}, headers=headers), 422)["errors"]["json"]
    extra = {"participant_id": alice.participant_id, "quality": "high"}
    assert_error(keyed.http.post(url, json=extra, headers=headers), 422)
    # Without the API key (a participant's token is not one): 401.
    assert_error(keyed.http.post(url, json={"participant_id": alice.participant_id}), 401)
    assert_error(keyed.http.get(url, headers=alice.headers), 401)
    # A recording of another session is not found in this one.
    other, carol, _dave = call(keyed)
    theirs = record(keyed, other["session_id"], participant_id=carol.participant_id)["recording_id"]
    assert_error(keyed.http.get(f"{url}/{theirs}", headers=headers), 404)
    # None of this made a recording here.
    assert keyed.http.get(url, headers=headers).json() == {"recordings": []}
