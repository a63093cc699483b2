"""Idempotency-Key on POST: a repeat returns the first response and does the work once; the
key is scoped to the caller and the request; concurrent repeats do the work once."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests

from models import PUBLISH
from signaling_cli import processes
from tests.conftest import read_fixture
from tests.support.api import Member
from tests.support.checks import Room, assert_error, session_documents

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
SUBSCRIBE_SDP = read_fixture("chromium-subscribe.sdp")


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


def twice(http: requests.Session, url: str, body: dict | None, headers: dict) -> tuple[requests.Response, ...]:
    return tuple(http.post(url, json=body, headers=headers) for _ in range(2))


def assert_replayed(first: requests.Response, second: requests.Response) -> None:
    assert second.status_code == first.status_code, (first.text, second.text)
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.headers.get("Idempotent-Replayed") is None


def messages_of(member, type_: str) -> list[dict]:
    return [m for m in member.inbox if m["type"] == type_]


@pytest.fixture(scope="module")
def second_web(stack, run_dir):
    """Another web instance of the same deployment: its own process, the same MongoDB and broker."""
    web = processes.start_web(stack.env, run_dir / "logs", name=f"{stack.env['SIGNALING_PREFIX']}-web-idem")
    yield f"http://127.0.0.1:{web.port}"
    web.stop()


def test_create_session_twice_creates_one(stack, api):
    count = session_documents(stack.env["MONGODB_URI"])
    first, second = twice(api.http, f"{api.base}/api/v1/sessions", {"name": "once"}, key())
    assert first.status_code == 201, first.text
    assert_replayed(first, second)
    assert session_documents(stack.env["MONGODB_URI"]) == count + 1
    # Without the header, the same request is a new session.
    again = api.http.post(f"{api.base}/api/v1/sessions", json={"name": "once"})
    assert again.status_code == 201 and again.json()["session_id"] != first.json()["session_id"]


def test_join_twice_joins_once(api):
    session = api.create_session()
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    body = {"display_name": "alice", "join_token": session["join_token"]}
    first, second = twice(api.http, url, body, key())
    assert first.status_code == 201, first.text
    assert_replayed(first, second)
    joined = first.json()
    headers = {"Authorization": f"Bearer {joined['token']}"}
    detail = api.http.get(f"{api.base}/api/v1/sessions/{session['session_id']}", headers=headers).json()
    assert [p["participant_id"] for p in detail["participants"]] == [joined["participant_id"]]
    # Exactly one participantJoined went out for alice, and she holds one place.
    alice = Member(api, session["session_id"], joined["participant_id"], joined["token"])
    room = Room(api, session, [alice])
    alice.wait_type("participantJoined", participant_id=alice.participant_id)
    room.add("bob")
    room.assert_quiet()
    announced = [m["participant_id"] for m in messages_of(alice, "participantJoined")]
    assert announced.count(alice.participant_id) == 1
    detail = api.http.get(f"{api.base}/api/v1/sessions/{session['session_id']}", headers=headers).json()
    assert len(detail["participants"]) == 2


def test_join_replay_counts_one_place_against_the_limit(api):
    session = api.create_session(max_participants=2)
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    same = key()
    for _ in range(3):
        response = api.http.post(url, json={"display_name": "alice", "join_token": session["join_token"]}, headers=same)
        assert response.status_code == 201, response.text
    second = api.http.post(url, json={"display_name": "bob", "join_token": session["join_token"]})
    assert second.status_code == 201, second.text


def test_message_twice_is_delivered_once(api):
    room = Room.open(api)
    alice, bob = room.members
    url = f"{room.url}/messages"
    first, second = twice(api.http, url, {"payload": {"n": 1}, "to": bob.participant_id}, {**alice.headers, **key()})
    assert first.status_code == 202, first.text
    assert_replayed(first, second)
    assert bob.wait_type("message")["payload"] == {"n": 1}
    room.assert_quiet(bob, alice)
    assert len(messages_of(bob, "message")) == 1


def test_broadcast_twice_is_delivered_once(api):
    room = Room.open(api, ("alice", "bob", "carol"))
    alice = room.members[0]
    first, second = twice(api.http, f"{room.url}/messages", {"payload": {"all": True}}, {**alice.headers, **key()})
    assert first.status_code == 202 and second.status_code == 202
    for member in room.members:
        member.wait_type("message")
    room.assert_quiet()
    assert [len(messages_of(m, "message")) for m in room.members] == [1, 1, 1]


def test_offer_twice_is_processed_once(api):
    room = Room.open(api)
    alice, bob = room.members
    first, second = twice(
        api.http, f"{alice.base}/offers", {"stream": PUBLISH, "sdp": PUBLISH_SDP}, {**alice.headers, **key()}
    )
    assert first.status_code == 202, first.text
    assert_replayed(first, second)
    request_id = first.json()["request_id"]
    alice.wait_type("sdpAnswer", request_id=request_id)
    alice.wait_type("iceGatheringDone", stream=PUBLISH)
    # The announcement goes to the whole session, the publisher included, in no fixed order
    # with her own answer and candidates.
    for member in (alice, bob):
        member.wait_type("streamPublished", participant_id=alice.participant_id)
    room.assert_quiet(alice, bob, wait=2.0)
    assert len(messages_of(alice, "sdpAnswer")) == 1
    assert len(messages_of(alice, "iceGatheringDone")) == 1
    assert len(messages_of(alice, "streamPublished")) == len(messages_of(bob, "streamPublished")) == 1
    assert not messages_of(alice, "error")


def test_candidates_and_rejoin_replays(api):
    room = Room.open(api)
    alice = room.members[0]
    candidate = {
        "candidate": "candidate:1 1 udp 2122194687 192.0.2.2 50720 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    for path, body in (
        (f"{alice.base}/candidates", {"stream": PUBLISH, "candidate": candidate}),
        (f"{alice.base}/rejoin", None),
    ):
        first, second = twice(api.http, path, body, {**alice.headers, **key()})
        assert first.status_code == 202, first.text
        assert_replayed(first, second)


def test_same_key_from_another_participant_is_another_request(api):
    room = Room.open(api, ("alice", "bob", "carol"))
    alice, bob, carol = room.members
    shared = key()
    for sender in (alice, bob):
        response = api.http.post(
            f"{room.url}/messages",
            json={"payload": {"n": 1}, "to": carol.participant_id},
            headers={**sender.headers, **shared},
        )
        assert response.status_code == 202, response.text
        assert response.headers.get("Idempotent-Replayed") is None
    carol.wait_for(lambda m: m["type"] == "message" and m["from"] == alice.participant_id)
    carol.wait_for(lambda m: m["type"] == "message" and m["from"] == bob.participant_id)
    room.assert_quiet(carol)
    assert len(messages_of(carol, "message")) == 2
    # Offers too: each participant's offer with the same key is its own.
    ids = [
        api.http.post(
            f"{m.base}/offers", json={"stream": PUBLISH, "sdp": PUBLISH_SDP}, headers={**m.headers, **shared}
        ).json()["request_id"]
        for m in (alice, bob)
    ]
    assert ids[0] != ids[1]
    alice.wait_type("sdpAnswer", request_id=ids[0])
    bob.wait_type("sdpAnswer", request_id=ids[1])


def test_same_key_on_another_route_is_another_request(api):
    room = Room.open(api)
    alice, bob = room.members
    shared = key()
    offer = api.http.post(
        f"{alice.base}/offers", json={"stream": PUBLISH, "sdp": PUBLISH_SDP}, headers={**alice.headers, **shared}
    )
    message = api.http.post(f"{room.url}/messages", json={"payload": {"x": 1}}, headers={**alice.headers, **shared})
    assert offer.status_code == 202 and message.status_code == 202
    assert "request_id" in offer.json() and message.json() == {}
    bob.wait_type("message")


def test_replay_with_another_join_token_does_not_hand_out_the_first_token(api):
    """The key alone is not a credential: a different caller reusing it must not get the
    participant token the first join returned."""
    session = api.create_session()
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    shared = key()
    first = api.http.post(url, json={"display_name": "alice", "join_token": session["join_token"]}, headers=shared)
    assert first.status_code == 201, first.text
    with requests.Session() as eve:
        stolen = eve.post(url, json={"display_name": "eve", "join_token": "guessed"}, headers=shared)
    assert first.json()["token"] not in stolen.text
    assert_error(stolen, 403, 409, 422)


def test_same_key_with_another_body_is_refused_and_does_nothing(stack, api):
    """The key names one request: reused for a different body it gets 422 (and changes nothing),
    neither the first response (which answers another request) nor the work done a second time."""
    room = Room.open(api)
    alice, bob = room.members
    shared = {**alice.headers, **key()}
    answers = [
        api.http.post(f"{room.url}/messages", json={"payload": {"n": n}, "to": bob.participant_id}, headers=shared)
        for n in (1, 2, 1, 2)
    ]
    assert [a.status_code for a in answers] == [202, 422, 202, 422], [a.text for a in answers]
    assert answers[2].headers.get("Idempotent-Replayed") == "true"
    for refused in (answers[1], answers[3]):
        body = assert_error(refused, 422)
        assert "different body" in body["message"] and "new key" in body["message"], body
    bob.wait_type("message", payload={"n": 1})
    room.assert_quiet(bob)
    assert [m["payload"] for m in messages_of(bob, "message")] == [{"n": 1}]
    # Session creation too: another body under the key creates nothing.
    count = session_documents(stack.env["MONGODB_URI"])
    same = key()
    assert api.http.post(f"{api.base}/api/v1/sessions", json={"name": "a"}, headers=same).status_code == 201
    assert_error(api.http.post(f"{api.base}/api/v1/sessions", json={"name": "b"}, headers=same), 422)
    assert session_documents(stack.env["MONGODB_URI"]) == count + 1


def test_same_body_in_another_key_order_is_a_repeat(api):
    room = Room.open(api)
    alice, bob = room.members
    headers = {**alice.headers, **key(), "Content-Type": "application/json"}
    bodies = (
        json.dumps({"payload": {"a": 1, "b": 2}, "to": bob.participant_id}),
        json.dumps({"to": bob.participant_id, "payload": {"b": 2, "a": 1}}, indent=2),
    )
    answers = [api.http.post(f"{room.url}/messages", data=body, headers=headers) for body in bodies]
    assert_replayed(*answers)
    bob.wait_type("message")
    room.assert_quiet(bob)
    assert len(messages_of(bob, "message")) == 1


@pytest.mark.parametrize("length", [256, 1000])
def test_key_longer_than_255_is_refused(stack, api, length):
    count = session_documents(stack.env["MONGODB_URI"])
    long_key = {"Idempotency-Key": "k" * length}
    assert_error(api.http.post(f"{api.base}/api/v1/sessions", json={}, headers=long_key), 400)
    assert session_documents(stack.env["MONGODB_URI"]) == count
    room = Room.open(api)
    alice, bob = room.members
    response = api.http.post(f"{room.url}/messages", json={"payload": {}}, headers={**alice.headers, **long_key})
    assert_error(response, 400)
    room.assert_quiet()


def test_key_of_255_is_accepted(api):
    first, second = twice(api.http, f"{api.base}/api/v1/sessions", {}, {"Idempotency-Key": "k" * 255})
    assert first.status_code == 201
    assert_replayed(first, second)


def test_empty_key_is_refused(stack, api):
    count = session_documents(stack.env["MONGODB_URI"])
    assert_error(api.http.post(f"{api.base}/api/v1/sessions", json={}, headers={"Idempotency-Key": ""}), 400)
    assert session_documents(stack.env["MONGODB_URI"]) == count


def _at_once(n: int, send) -> list[requests.Response]:
    barrier = threading.Barrier(n)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def run() -> None:
        with requests.Session() as http:
            barrier.wait()
            response = send(http)
            # Every test here comes from one address, which the shared stack rate-limits (50/s,
            # burst 100): a 429 did nothing (it claims no key), so resend after Retry-After, as
            # any client would; the assertions are on what the requests finally got.
            for _ in range(10):
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
                response = send(http)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == n
    return results


def _one_did_the_work(results: list[requests.Response], success: int) -> list[dict]:
    done = [r for r in results if r.status_code == success]
    for other in results:
        if other.status_code != success:
            assert_error(other, 409)
    assert done, [(r.status_code, r.text) for r in results]
    assert all(r.json() == done[0].json() for r in done)
    return [r.json() for r in done]


def test_concurrent_session_creation_with_one_key(stack, api):
    count = session_documents(stack.env["MONGODB_URI"])
    same = key()
    results = _at_once(12, lambda http: http.post(f"{api.base}/api/v1/sessions", json={"name": "race"}, headers=same))
    _one_did_the_work(results, 201)
    assert session_documents(stack.env["MONGODB_URI"]) == count + 1


def test_concurrent_joins_with_one_key(api):
    session = api.create_session()
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    same = key()
    results = _at_once(
        12,
        lambda http: http.post(url, json={"display_name": "alice", "join_token": session["join_token"]}, headers=same),
    )
    joined = _one_did_the_work(results, 201)[0]
    headers = {"Authorization": f"Bearer {joined['token']}"}
    detail = api.http.get(f"{api.base}/api/v1/sessions/{session['session_id']}", headers=headers).json()
    assert len(detail["participants"]) == 1


def test_concurrent_messages_with_one_key(api):
    room = Room.open(api)
    alice, bob = room.members
    same = {**alice.headers, **key()}
    results = _at_once(
        12,
        lambda http: http.post(
            f"{room.url}/messages", json={"payload": {"race": 1}, "to": bob.participant_id}, headers=same
        ),
    )
    _one_did_the_work(results, 202)
    bob.wait_type("message")
    room.assert_quiet(bob, wait=1.5)
    assert len(messages_of(bob, "message")) == 1


def test_concurrent_offers_with_one_key(api):
    room = Room.open(api)
    alice, bob = room.members
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    same = {**bob.headers, **key()}
    results = _at_once(
        8,
        lambda http: http.post(
            f"{bob.base}/offers", json={"stream": alice.participant_id, "sdp": SUBSCRIBE_SDP}, headers=same
        ),
    )
    request_id = _one_did_the_work(results, 202)[0]["request_id"]
    bob.wait_type("sdpAnswer", request_id=request_id)
    bob.wait_type("iceGatheringDone", stream=alice.participant_id)
    room.assert_quiet(bob, wait=1.5)
    assert len(messages_of(bob, "sdpAnswer")) == 1


def test_a_key_repeated_on_another_web_instance_returns_the_first_response(stack, api, second_web):
    count = session_documents(stack.env["MONGODB_URI"])
    same = key()
    first = api.http.post(f"{api.base}/api/v1/sessions", json={"name": "two"}, headers=same)
    second = requests.post(f"{second_web}/api/v1/sessions", json={"name": "two"}, headers=same)
    assert first.status_code == 201, first.text
    assert_replayed(first, second)
    assert session_documents(stack.env["MONGODB_URI"]) == count + 1

    room = Room.open(api)
    alice, bob = room.members
    path = f"/api/v1/sessions/{room.sid}/messages"
    headers = {**alice.headers, **key()}
    body = {"payload": {"n": 1}, "to": bob.participant_id}
    first = api.http.post(api.base + path, json=body, headers=headers)
    second = requests.post(second_web + path, json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert_replayed(first, second)
    # Another body under that key, on the instance that did not do the work: refused there too.
    assert_error(requests.post(second_web + path, json={**body, "payload": {"n": 2}}, headers=headers), 422)
    bob.wait_type("message", payload={"n": 1})
    room.assert_quiet(bob)
    assert len(messages_of(bob, "message")) == 1

    join = f"/api/v1/sessions/{room.sid}/participants"
    joiner = {"display_name": "carol", "join_token": room.session["join_token"]}
    headers = key()
    first = api.http.post(api.base + join, json=joiner, headers=headers)
    second = requests.post(second_web + join, json=joiner, headers=headers)
    assert first.status_code == 201, first.text
    assert_replayed(first, second)
    alice.wait_type("participantJoined", participant_id=first.json()["participant_id"])
    room.assert_quiet(alice)
    assert len(room.snapshot()["participants"]) == 3


def test_concurrent_repeats_on_two_web_instances_do_the_work_once(stack, api, second_web):
    count = session_documents(stack.env["MONGODB_URI"])
    same = key()
    turn = iter(range(1000))
    lock = threading.Lock()

    def send(http: requests.Session) -> requests.Response:
        with lock:
            base = (api.base, second_web)[next(turn) % 2]
        return http.post(f"{base}/api/v1/sessions", json={"name": "race"}, headers=same)

    _one_did_the_work(_at_once(12, send), 201)
    assert session_documents(stack.env["MONGODB_URI"]) == count + 1
