"""Several publications per participant, unpublishing one, and server-side mute (issue 15), through the
real service and the signaling-mode emulator; what the media server connects is read back from it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import kurento
from models import Endpoint
from tests.conftest import read_fixture
from tests.support.api import Member
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
SUBSCRIBE_SDP = read_fixture("chromium-subscribe.sdp")


@pytest.fixture
def kms(kms_url):
    client = kurento.KurentoClient(kms_url, request_timeout=10.0)
    yield client
    client.close()


def publish(member: Member, stream: str = "publish") -> dict:
    request_id = member.offer(PUBLISH_SDP, stream)
    return member.wait_type("sdpAnswer", request_id=request_id)


def subscribe(member: Member, stream: str) -> dict:
    request_id = member.offer(SUBSCRIBE_SDP, stream)
    return member.wait_type("sdpAnswer", request_id=request_id)


def streams_url(member: Member, name: str) -> str:
    return f"{member.base}/streams/{name}"


def sources(kms: kurento.KurentoClient, participant_id: str, stream: str) -> set[tuple[str, str]]:
    stored = Endpoint.find(participant_id, stream)
    assert stored is not None and stored.kurento is not None
    return {(c["source"], c["type"]) for c in kms.proxy(stored.kurento.id).invoke("getSourceConnections")}


def publish_endpoint(participant_id: str, name: str = "main") -> str:
    stored = Endpoint.find(participant_id, "publish" if name == "main" else f"publish:{name}")
    assert stored is not None and stored.kurento is not None
    return str(stored.kurento.id)


def test_a_second_publication_is_announced_and_received_beside_the_main_one(api, db, kms):
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    assert publish(alice, "publish:main")["stream"] == "publish"  # "publish:main" is "publish"
    assert publish(alice, "publish:screen")["stream"] == "publish:screen"
    main = bob.wait_type("streamPublished", participant_id=alice.participant_id, name="main")
    screen = bob.wait_type("streamPublished", participant_id=alice.participant_id, name="screen")
    assert (main["audio"], main["video"], screen["audio"], screen["video"]) == (True, True, True, True)
    assert subscribe(bob, alice.participant_id)["stream"] == alice.participant_id
    assert subscribe(bob, f"{alice.participant_id}:screen")["stream"] == f"{alice.participant_id}:screen"
    assert subscribe(bob, f"{alice.participant_id}:main")["stream"] == alice.participant_id
    assert {s for s, _ in sources(kms, bob.participant_id, f"{alice.participant_id}:screen")} == {
        publish_endpoint(alice.participant_id, "screen")
    }
    assert {s for s, _ in sources(kms, bob.participant_id, alice.participant_id)} == {
        publish_endpoint(alice.participant_id)
    }


def test_bad_names_a_fifth_publication_and_an_unknown_one_are_refused(api):
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    for stream in ("publish:Screen", "publish:", f"{alice.participant_id}:{'x' * 33}"):
        response = bob.api.http.post(
            f"{bob.base}/offers", json={"stream": stream, "sdp": PUBLISH_SDP}, headers=bob.headers
        )
        assert response.status_code == 422, (stream, response.text)
        assert "stream" in response.json()["errors"]
    publish(alice)
    for name in ("one", "two", "three"):
        publish(alice, f"publish:{name}")
    response = alice.api.http.post(
        f"{alice.base}/offers", json={"stream": "publish:four", "sdp": PUBLISH_SDP}, headers=alice.headers
    )
    assert response.status_code == 409 and "At most 4 publications" in response.json()["message"]
    publish(alice, "publish:three")  # re-offering an existing one is no fifth
    # Receiving a publication its publisher does not have: the worker refuses it (409, as for "<pid>").
    request_id = bob.offer(SUBSCRIBE_SDP, f"{alice.participant_id}:nope")
    error = bob.wait_type("error", request_id=request_id)
    assert error["code"] == 409 and "not publishing 'nope'" in error["message"]


def test_offers_racing_for_the_last_publications_never_pass_the_limit(api, db):
    session = api.create_session()
    alice = api.join(session, "alice")
    publish(alice)
    publish(alice, "publish:one")  # two places left: "two" more named publications at most
    names = [f"race{i}" for i in range(8)]
    barrier = threading.Barrier(len(names))

    def offer(name: str) -> requests.Response:
        barrier.wait()  # all at once, spread over the web processes' connections
        return requests.post(
            f"{alice.base}/offers",
            json={"stream": f"publish:{name}", "sdp": PUBLISH_SDP},
            headers=alice.headers,
            timeout=30,
        )

    with ThreadPoolExecutor(len(names)) as pool:
        answers = dict(zip(names, pool.map(offer, names), strict=True))
    admitted = [name for name, response in answers.items() if response.status_code == 202]
    refused = [name for name, response in answers.items() if response.status_code == 409]
    assert sorted(admitted + refused) == sorted(names), {n: r.text for n, r in answers.items()}
    assert all("At most 4 publications" in answers[name].json()["message"] for name in refused)
    assert 1 <= len(admitted) <= 2, admitted
    for name in admitted:
        assert alice.wait_type("sdpAnswer", request_id=answers[name].json()["request_id"])["stream"] == (
            f"publish:{name}"
        )
    assert Endpoint.publication_names(alice.participant_id) == {"main", "one", *admitted}


def test_unpublishing_releases_the_endpoints_and_tells_everyone(api, db, kms):
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    publish(alice)
    publish(alice, "publish:screen")
    bob.wait_type("streamPublished", participant_id=alice.participant_id, name="screen")
    subscribe(bob, f"{alice.participant_id}:screen")
    released = [publish_endpoint(alice.participant_id, "screen")]
    released.append(str(Endpoint.find(bob.participant_id, f"{alice.participant_id}:screen").kurento.id))

    assert bob.api.http.delete(streams_url(alice, "screen"), headers=bob.headers).status_code == 403
    response = alice.api.http.delete(streams_url(alice, "screen"), headers=alice.headers)
    assert response.status_code == 202, response.text
    gone = bob.wait_type("streamUnpublished", participant_id=alice.participant_id, name="screen")
    assert gone["reason"] == "unpublished"
    for object_id in released:
        wait_until(lambda oid=object_id: not _on_kms(kms, oid), f"{object_id} released")
    assert Endpoint.find(alice.participant_id, "publish") is not None  # main stays

    for name, status in (("screen", 404), ("Bad!", 422)):
        response = alice.api.http.delete(streams_url(alice, name), headers=alice.headers)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"code", "status", "message", "errors"}


def test_the_publisher_leaving_ends_each_publication_with_reason_left(api):
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    publish(alice)
    publish(alice, "publish:screen")
    assert alice.leave().status_code == 202
    for name in ("main", "screen"):
        assert bob.wait_type("streamUnpublished", participant_id=alice.participant_id, name=name)["reason"] == "left"


def test_mute_stops_forwarding_that_kind_to_every_subscriber_and_is_kept(api, db, kms):
    session = api.create_session()
    alice, bob, carol = (api.join(session, n) for n in ("alice", "bob", "carol"))
    publish(alice)
    subscribe(bob, alice.participant_id)
    source = publish_endpoint(alice.participant_id)
    url = f"{streams_url(alice, 'main')}/mute"

    response = alice.api.http.post(url, json={"video": True}, headers=alice.headers)
    assert response.status_code == 202, response.text
    muted = carol.wait_type("streamMuted", participant_id=alice.participant_id)
    assert (muted["name"], muted["audio"], muted["video"]) == ("main", False, True)
    assert sources(kms, bob.participant_id, alice.participant_id) == {(source, "AUDIO"), (source, "DATA")}
    # A subscriber arriving now, and a renegotiation, respect the stored state.
    subscribe(carol, alice.participant_id)
    assert {t for _, t in sources(kms, carol.participant_id, alice.participant_id)} == {"AUDIO", "DATA"}
    publish(alice)
    renegotiated = publish_endpoint(alice.participant_id)
    for member in (bob, carol):
        assert sources(kms, member.participant_id, alice.participant_id) == {
            (renegotiated, "AUDIO"),
            (renegotiated, "DATA"),
        }

    response = alice.api.http.post(url, json={"video": False, "audio": True}, headers=alice.headers)
    assert response.status_code == 202
    carol.wait_type("streamMuted", participant_id=alice.participant_id, audio=True, video=False)
    assert sources(kms, bob.participant_id, alice.participant_id) == {(renegotiated, "VIDEO"), (renegotiated, "DATA")}

    for name, body, status in (("screen", {"audio": True}, 404), ("main", {"audio": "loud"}, 422)):
        response = alice.api.http.post(f"{streams_url(alice, name)}/mute", json=body, headers=alice.headers)
        assert response.status_code == status, response.text
    assert bob.api.http.post(url, json={"audio": False}, headers=bob.headers).status_code == 403


def test_the_api_key_unpublishes_and_mutes(keyed, keyed_db):
    session = keyed.create_session()
    alice, bob = keyed.join(session, "alice"), keyed.join(session, "bob")
    publish(alice, "publish:screen")
    backend = keyed.http
    url = streams_url(alice, "screen")
    assert backend.post(f"{url}/mute", json={"audio": True}, headers=keyed.key_headers).status_code == 202
    bob.wait_type("streamMuted", participant_id=alice.participant_id, name="screen", audio=True)
    recording = backend.post(
        f"{keyed.base}/api/v1/sessions/{session['session_id']}/recordings",
        json={"participant_id": alice.participant_id, "name": "screen"},
        headers=keyed.key_headers,
    )
    assert recording.status_code == 201, recording.text
    recording_id = recording.json()["recording_id"]
    bob.wait_type("recordingStarted", recording_id=recording_id)
    assert backend.delete(url, headers=keyed.key_headers).status_code == 202
    bob.wait_type("streamUnpublished", participant_id=alice.participant_id, name="screen", reason="unpublished")
    # Its recording stops with it.
    assert bob.wait_type("recordingStopped", recording_id=recording_id)["reason"] == "unpublished"
    assert backend.delete(url).status_code == 401


def _on_kms(client: kurento.KurentoClient, object_id: str) -> bool:
    try:
        client.get_object(object_id)
        return True
    except kurento.ObjectNotFound:
        return False


def test_session_bandwidth_defaults_are_validated_and_applied(api, db, kms):
    http = api.http
    for body in ({"max_video_send_bandwidth": 0}, {"min_video_send_bandwidth": 900, "max_video_send_bandwidth": 600}):
        response = http.post(f"{api.base}/api/v1/sessions", json=body)
        assert response.status_code == 422, response.text
    session = api.create_session(max_video_send_bandwidth=800, max_video_recv_bandwidth=2000)
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    publish(alice)
    subscribe(bob, alice.participant_id)
    assert kms.proxy(publish_endpoint(alice.participant_id)).invoke("getMaxVideoRecvBandwidth") == 2000
    subscription = Endpoint.find(bob.participant_id, alice.participant_id).kurento.id
    assert kms.proxy(subscription).invoke("getMaxVideoSendBandwidth") == 800


def test_a_rejoin_ends_every_publication_for_the_others(api):
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    publish(alice)
    publish(alice, "publish:screen")
    bob.wait_type("streamPublished", participant_id=alice.participant_id, name="screen")
    assert alice.api.http.post(f"{alice.base}/rejoin", headers=alice.headers).status_code == 202
    for name in ("main", "screen"):
        ended = bob.wait_type("streamUnpublished", participant_id=alice.participant_id, name=name)
        assert ended["reason"] == "rejoined"
    publish(alice, "publish:screen")  # publishes again, announced again
    bob.wait_for(lambda m: m["type"] == "streamPublished" and m.get("name") == "screen" and m["seq"] > ended["seq"])


def test_a_minted_tokens_bandwidth_replaces_the_sessions_for_its_participant(keyed, keyed_db, kms):
    session = keyed.create_session(max_video_send_bandwidth=800, max_video_recv_bandwidth=2000)
    sid = session["session_id"]
    tokens = f"{keyed.base}/api/v1/sessions/{sid}/tokens"
    for body in (
        {"max_video_recv_bandwidth": 0},
        {"max_video_send_bandwidth": "fast"},
        {"min_video_send_bandwidth": 900, "max_video_send_bandwidth": 600},
    ):
        response = keyed.http.post(tokens, json=body, headers=keyed.key_headers)
        assert response.status_code == 422, response.text
        assert set(response.json()) == {"code", "status", "message", "errors"}
    minted = keyed.http.post(
        tokens, json={"max_video_send_bandwidth": 300, "max_video_recv_bandwidth": 700}, headers=keyed.key_headers
    )
    assert minted.status_code == 201, minted.text
    joined = keyed.http.post(
        f"{keyed.base}/api/v1/sessions/{sid}/participants",
        json={"display_name": "carol", "join_token": minted.json()["join_token"]},
    )
    assert joined.status_code == 201, joined.text
    carol = Member(keyed, sid, joined.json()["participant_id"], joined.json()["token"])
    alice = keyed.join(session, "alice")  # the shared token: the session's limits
    publish(alice)
    publish(carol)
    subscribe(carol, alice.participant_id)
    subscribe(alice, carol.participant_id)
    assert kms.proxy(publish_endpoint(carol.participant_id)).invoke("getMaxVideoRecvBandwidth") == 700
    assert kms.proxy(publish_endpoint(alice.participant_id)).invoke("getMaxVideoRecvBandwidth") == 2000
    carols = Endpoint.find(carol.participant_id, alice.participant_id).kurento.id
    alices = Endpoint.find(alice.participant_id, carol.participant_id).kurento.id
    assert kms.proxy(carols).invoke("getMaxVideoSendBandwidth") == 300
    assert kms.proxy(alices).invoke("getMaxVideoSendBandwidth") == 800
