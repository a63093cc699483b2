"""A group call's signaling through the real service and the signaling-mode emulator."""

from __future__ import annotations

import json

import pytest

import kurento
from models import PUBLISH
from tests.conftest import read_fixture
from tests.support import emulator_control, rabbit
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
SUBSCRIBE_SDP = read_fixture("chromium-subscribe.sdp")
PUBLISH_CANDIDATES = json.loads(read_fixture("chromium-publish.candidates.json"))


def on_kms(client: kurento.KurentoClient, object_id: str) -> bool:
    """Whether the media server still has the object (asked with describe)."""
    try:
        client.get_object(object_id)
        return True
    except kurento.ObjectNotFound:
        return False


@pytest.fixture
def kms(kms_url):
    """This test process's own Kurento client of the stack's media server, to look at its objects."""
    client = kurento.KurentoClient(kms_url, request_timeout=10.0)
    yield client
    client.close()


def test_publish_answer_candidates_and_announcement(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    request_id = alice.offer(PUBLISH_SDP)
    answer = alice.wait_type("sdpAnswer", request_id=request_id)
    assert answer["stream"] == PUBLISH and answer["sdp"].startswith("v=0")
    candidate = alice.wait_type("iceCandidate", stream=PUBLISH)["candidate"]
    assert candidate["candidate"].startswith("candidate:") and "sdpMLineIndex" in candidate
    alice.wait_type("iceGatheringDone", stream=PUBLISH)
    assert bob.wait_type("streamPublished")["participant_id"] == alice.participant_id


def test_subscribe_to_a_publisher(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    request_id = bob.offer(SUBSCRIBE_SDP, stream=alice.participant_id)
    answer = bob.wait_type("sdpAnswer", request_id=request_id)
    assert answer["stream"] == alice.participant_id
    bob.wait_type("iceGatheringDone", stream=alice.participant_id)


def test_subscribing_to_someone_not_publishing_gets_an_error_message(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    request_id = bob.offer(SUBSCRIBE_SDP, stream=alice.participant_id)
    error = bob.wait_type("error", request_id=request_id)
    assert error["code"] == 409


def test_candidates_sent_before_the_offer_reach_the_endpoint(api, db, kms_url):
    from models import Endpoint

    session = api.create_session()
    alice = api.join(session, "alice")
    assert alice.candidates(PUBLISH, PUBLISH_CANDIDATES).status_code == 202
    # The offer goes only once the worker has buffered them (no endpoint yet): this is the buffer's test.
    wait_until(
        lambda: (
            len(getattr(Endpoint.find(alice.participant_id, PUBLISH), "pending_candidates", []))
            == len(PUBLISH_CANDIDATES)
        ),
        "candidates buffered",
    )
    request_id = alice.offer(PUBLISH_SDP)
    alice.wait_type("sdpAnswer", request_id=request_id)
    # The buffered candidates are applied before gatherCandidates, so they are all in by now.
    alice.wait_type("iceGatheringDone", stream=PUBLISH)
    stored = Endpoint.find(alice.participant_id, PUBLISH)
    assert stored.pending_candidates == []
    # What the endpoint received through addIceCandidate, as the emulator process reports it.
    received = emulator_control.remote_candidates(kms_url, stored.kurento.id)
    assert received == [{key: c[key] for key in ("candidate", "sdpMid", "sdpMLineIndex")} for c in PUBLISH_CANDIDATES]


def test_leave_releases_media_and_tells_the_others(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    assert alice.leave().status_code == 202
    assert bob.wait_type("streamUnpublished")["participant_id"] == alice.participant_id
    left = bob.wait_type("participantLeft", participant_id=alice.participant_id)
    assert left["reason"] == "left"


def test_leave_releases_every_endpoint_of_the_leaver_and_fed_by_it(api, db, kms, stack):
    from messaging import topology
    from models import Endpoint, Session
    from settings import load_settings

    session = api.create_session()
    alice, bob, carol = (api.join(session, name) for name in ("alice", "bob", "carol"))
    for publisher in (alice, bob):
        publisher.wait_type("sdpAnswer", request_id=publisher.offer(PUBLISH_SDP))
    for viewer, publisher in ((bob, alice), (carol, alice), (alice, bob), (carol, bob)):
        viewer.wait_type("streamPublished", participant_id=publisher.participant_id)
        viewer.wait_type("sdpAnswer", request_id=viewer.offer(SUBSCRIBE_SDP, stream=publisher.participant_id))

    def endpoint_id(owner, stream):
        return Endpoint.find(owner.participant_id, stream).kurento.id

    released = {
        endpoint_id(alice, PUBLISH),
        endpoint_id(bob, alice.participant_id),
        endpoint_id(carol, alice.participant_id),
        endpoint_id(alice, bob.participant_id),
    }
    kept = {endpoint_id(bob, PUBLISH), endpoint_id(carol, bob.participant_id)}
    pipeline = Session.objects(id=session["session_id"]).first().pipeline.id
    assert set(kms.proxy(pipeline).invoke("getChildren")) == released | kept

    settings = load_settings(stack.env)
    binding = (
        topology.session_exchange(settings, session["session_id"]).name,
        topology.participant_queue(settings, session["session_id"], alice.participant_id).name,
    )
    assert binding in rabbit.bindings(stack.env["RABBITMQ_URL"])

    assert alice.leave().status_code == 202
    # The worker releases the endpoints before it announces the departure.
    bob.wait_type("participantLeft", participant_id=alice.participant_id)
    carol.wait_type("streamUnpublished", participant_id=alice.participant_id)
    assert [object_id for object_id in released if on_kms(kms, object_id)] == []
    assert all(on_kms(kms, object_id) for object_id in kept)
    assert set(kms.proxy(pipeline).invoke("getChildren")) == kept
    assert {e.kurento.id for e in Endpoint.objects(session_id=session["session_id"])} == kept
    # Unbound after the announcement: the queue gets no more broadcasts and expires later.
    wait_until(lambda: binding not in rabbit.bindings(stack.env["RABBITMQ_URL"]), "alice's queue unbound")
    assert all(b[0] != binding[0] for b in rabbit.bindings(stack.env["RABBITMQ_URL"]) if b[1] == binding[1])


def test_closing_a_session_releases_its_pipeline(keyed, keyed_db, kms, keyed_stack):
    from messaging import topology
    from models import Endpoint, Session
    from settings import load_settings

    session = keyed.create_session()
    alice, bob = keyed.join(session, "alice"), keyed.join(session, "bob")
    alice.wait_type("sdpAnswer", request_id=alice.offer(PUBLISH_SDP))
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    bob.wait_type("sdpAnswer", request_id=bob.offer(SUBSCRIBE_SDP, stream=alice.participant_id))
    pipeline = Session.objects(id=session["session_id"]).first().pipeline.id
    endpoints = [e.kurento.id for e in Endpoint.objects(session_id=session["session_id"])]
    assert len(endpoints) == 2 and pipeline in kms.server_manager.get_pipelines()
    exchange = topology.session_exchange(load_settings(keyed_stack.env), session["session_id"]).name

    response = keyed.http.delete(f"{keyed.base}/api/v1/sessions/{session['session_id']}", headers=keyed.key_headers)
    assert response.status_code == 202
    bob.wait_type("sessionClosed")
    # The worker tells everyone first, then releases the pipeline (and its endpoints with it).
    wait_until(lambda: pipeline not in kms.server_manager.get_pipelines(), "pipeline released")
    assert not on_kms(kms, pipeline) and not any(on_kms(kms, object_id) for object_id in endpoints)
    wait_until(lambda: exchange not in rabbit.exchanges(keyed_stack.env["RABBITMQ_URL"]), "session exchange deleted")
    assert Endpoint.objects(session_id=session["session_id"]).count() == 0


def test_closing_a_session_tells_everyone(keyed):
    session = keyed.create_session()
    alice = keyed.join(session, "alice")
    bob = keyed.join(session, "bob")
    response = keyed.http.delete(f"{keyed.base}/api/v1/sessions/{session['session_id']}", headers=keyed.key_headers)
    assert response.status_code == 202
    alice.wait_type("sessionClosed")
    bob.wait_type("sessionClosed")


def test_rejoin_gives_fresh_media_and_an_offer_right_after_it_is_kept(api, db):
    from models import Endpoint

    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    bob.offer(SUBSCRIBE_SDP, stream=alice.participant_id)
    bob.wait_type("sdpAnswer", stream=alice.participant_id)
    old = Endpoint.find(alice.participant_id, PUBLISH).kurento.id
    assert api.http.post(f"{alice.base}/rejoin", headers=alice.headers).status_code == 202
    request_id = alice.offer(PUBLISH_SDP)  # at once: no waiting for the release to finish
    alice.wait_type("sdpAnswer", request_id=request_id)
    bob.wait_type("streamUnpublished", participant_id=alice.participant_id)
    bob.wait_for(
        lambda m: (
            m["type"] == "streamPublished"
            and m["seq"] > bob.inbox[0]["seq"]
            and [x["type"] for x in bob.inbox].count("streamPublished") >= 2
        )
    )
    fresh = Endpoint.find(alice.participant_id, PUBLISH)
    assert fresh is not None and fresh.kurento.id != old
    assert Endpoint.find(bob.participant_id, alice.participant_id) is None  # bob resubscribes to the new stream
