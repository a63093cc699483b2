"""Roles, minted join tokens, the shared token's rotation, removal and revocation (DESIGN.md, "REST
API v1, second part"), against the keyed stack: real web and worker processes, RabbitMQ, the
signaling-mode emulator.

A minted token admits once, with its role and its name and metadata over the body's; the shared
token joins as a publisher until it is rotated out (403). A subscriber never publishes (403) and
the media server is told which way media goes. A moderator or the API key removes a participant:
everyone gets participantLeft with reason "removed", and the removed participant's token is
refused (409) everywhere but its poll, which still drains what was queued.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from models import JoinGrant
from signaling_cli import processes
from tests.conftest import read_fixture
from tests.support.api import Api, Member
from tests.support.checks import Room, assert_error

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")  # its m-lines are sendrecv
SUBSCRIBE_SDP = read_fixture("chromium-subscribe.sdp")
CANDIDATES = json.loads(read_fixture("chromium-publish.candidates.json"))


def sessions_url(api: Api, sid: str) -> str:
    return f"{api.base}/api/v1/sessions/{sid}"


def mint(api: Api, sid: str, headers: dict | None = None, **body) -> requests.Response:
    return api.http.post(
        f"{sessions_url(api, sid)}/tokens", json=body, headers=api.key_headers if headers is None else headers
    )


def minted(api: Api, sid: str, **body) -> dict:
    response = mint(api, sid, **body)
    assert response.status_code == 201, response.text
    return response.json()


def join(api: Api, sid: str, join_token: str, **body) -> requests.Response:
    return api.http.post(f"{sessions_url(api, sid)}/participants", json={"join_token": join_token, **body})


def member(api: Api, sid: str, join_token: str, **body) -> tuple[Member, dict]:
    response = join(api, sid, join_token, **body)
    assert response.status_code == 201, response.text
    answer = response.json()
    return Member(api, sid, answer["participant_id"], answer["token"]), answer


def remove(api: Api, target: Member, headers: dict) -> requests.Response:
    return api.http.delete(target.base, headers=headers)


def offer(who: Member, stream: str, sdp: str) -> requests.Response:
    return who.api.http.post(f"{who.base}/offers", json={"stream": stream, "sdp": sdp}, headers=who.headers)


def directions(sdp: str) -> set[str]:
    return {line.strip()[2:] for line in sdp.splitlines() if line.strip() in ("a=sendrecv", "a=sendonly", "a=recvonly")}


# --- minted tokens --------------------------------------------------------------------------


def test_a_minted_token_joins_once_with_its_role_name_and_metadata(keyed):
    room = Room.open(keyed, ("alice",))
    alice = room.members[0]
    before = datetime.now(UTC)
    token = minted(keyed, room.sid, role="subscriber", display_name="Carol", metadata={"seat": 3}, ttl_s=600)
    assert token["role"] == "subscriber" and token["join_token"]
    expires = datetime.fromisoformat(token["expires_at"])
    assert before + timedelta(seconds=590) <= expires <= datetime.now(UTC) + timedelta(seconds=610)

    # The token's name and metadata win over the body's.
    carol, answer = member(keyed, room.sid, token["join_token"], display_name="Mallory", metadata={"seat": 99})
    assert answer["role"] == "subscriber"
    token_expires = datetime.fromisoformat(answer["token_expires_at"])
    assert token_expires > datetime.now(UTC) + timedelta(hours=23)  # TOKEN_TTL_S, 24 h by default
    entries = {p["participant_id"]: p for p in answer["participants"]}
    assert entries[carol.participant_id] == {
        "participant_id": carol.participant_id,
        "display_name": "Carol",
        "publishing": False,
        "state": "joined",
        "role": "subscriber",
        "metadata": {"seat": 3},
    }
    assert (entries[alice.participant_id]["role"], entries[alice.participant_id]["metadata"]) == ("publisher", {})
    joined = alice.wait_type("participantJoined", participant_id=carol.participant_id)
    assert (joined["display_name"], joined["role"], joined["metadata"]) == ("Carol", "subscriber", {"seat": 3})
    read = keyed.http.get(room.url, headers=keyed.key_headers).json()
    assert {p["participant_id"]: p["role"] for p in read["participants"]} == {
        alice.participant_id: "publisher",
        carol.participant_id: "subscriber",
    }

    # Single use: any later join with it is a conflict, and takes no place.
    again = assert_error(join(keyed, room.sid, token["join_token"], display_name="Dave"), 409)
    assert "already used" in again["message"]
    assert len(keyed.http.get(room.url, headers=keyed.key_headers).json()["participants"]) == 2


def test_a_minted_token_without_a_name_takes_the_body_s_and_roles_default_to_publisher(keyed):
    room = Room.open(keyed, ())
    token = minted(keyed, room.sid)
    assert token["role"] == "publisher"
    # Without a name in the token, the body must give one.
    missing = assert_error(join(keyed, room.sid, token["join_token"]), 422)
    assert "display_name" in missing["errors"]
    # That refusal gave the token back: it still admits, once.
    dave, answer = member(keyed, room.sid, token["join_token"], display_name="Dave", metadata={"team": "blue"})
    assert answer["role"] == "publisher"
    entry = next(p for p in answer["participants"] if p["participant_id"] == dave.participant_id)
    assert (entry["display_name"], entry["metadata"]) == ("Dave", {"team": "blue"})


def test_a_minted_token_of_another_session_or_made_up_is_refused(keyed):
    room, other = Room.open(keyed, ()), Room.open(keyed, ())
    token = minted(keyed, other.sid, display_name="Eve")
    assert_error(join(keyed, room.sid, token["join_token"]), 403)
    assert_error(join(keyed, room.sid, "jt." + "x" * 32, display_name="Eve"), 403)
    # Still unused: its own session admits it.
    member(keyed, other.sid, token["join_token"])


def test_an_expired_minted_token_is_refused_and_takes_no_place(keyed, keyed_db):
    room = Room.open(keyed, ("alice",), max_participants=2)
    # Minted an hour ago for ten minutes: what POST /tokens stores, with its clock moved back.
    token, _grant = JoinGrant.mint(room.sid, "publisher", "Late", None, 600, now=datetime.now(UTC) - timedelta(hours=1))
    refused = assert_error(join(keyed, room.sid, token), 403)
    assert "expired" in refused["message"]
    member(keyed, room.sid, room.session["join_token"], display_name="bob")  # the second place was free


def test_a_join_refused_for_a_full_session_gives_the_minted_token_back(keyed):
    room = Room.open(keyed, ("alice",), max_participants=1)
    token = minted(keyed, room.sid, role="moderator", display_name="Mo")
    assert_error(join(keyed, room.sid, token["join_token"]), 409)
    assert room.members[0].leave().status_code == 202
    _mo, answer = member(keyed, room.sid, token["join_token"])
    assert answer["role"] == "moderator"


MINT_CASES = {
    "unknown role": ({"role": "admin"}, 422),
    "role not a string": ({"role": 1}, 422),
    "ttl_s 0": ({"ttl_s": 0}, 422),
    "ttl_s over a day": ({"ttl_s": 86401}, 422),
    "ttl_s negative": ({"ttl_s": -5}, 422),
    "ttl_s a numeric string": ({"ttl_s": "60"}, 422),
    "ttl_s fractional": ({"ttl_s": 1.5}, 422),
    "metadata a list": ({"metadata": [1, 2]}, 422),
    "metadata a string": ({"metadata": "{}"}, 422),
    "metadata over 4 KiB": ({"metadata": {"blob": "x" * 4090}}, 422),
    "display_name empty": ({"display_name": ""}, 422),
    "display_name with a control character": ({"display_name": "a\u202eb"}, 422),
    "unknown field": ({"rolee": "subscriber"}, 422),
}


@pytest.mark.parametrize("case", list(MINT_CASES))
def test_minting_refuses_bad_input(keyed, case):
    room = Room.open(keyed, ())
    body, code = MINT_CASES[case]
    error = assert_error(mint(keyed, room.sid, **body), code)
    assert error["errors"], error


def test_minting_accepts_the_bounds(keyed):
    room = Room.open(keyed, ())
    assert minted(keyed, room.sid, ttl_s=1)["role"] == "publisher"
    assert minted(keyed, room.sid, ttl_s=86400, role="moderator")["role"] == "moderator"
    exactly = {"b": "x" * (4096 - len('{"b":""}'))}  # 4096 bytes as compact JSON
    assert minted(keyed, room.sid, metadata=exactly)["role"] == "publisher"


def test_minting_and_rotating_need_the_api_key_and_an_open_session(keyed):
    room = Room.open(keyed, ("alice",))
    alice = room.members[0]
    for headers in ({}, {"X-API-Key": "k3"}, alice.headers):
        assert_error(mint(keyed, room.sid, headers=headers), 401)
        assert_error(keyed.http.post(f"{room.url}/join-token", headers=headers), 401)
    unknown = uuid.uuid4().hex
    assert_error(mint(keyed, unknown), 404)
    assert_error(keyed.http.post(f"{sessions_url(keyed, unknown)}/join-token", headers=keyed.key_headers), 404)
    assert keyed.http.delete(room.url, headers=keyed.key_headers).status_code == 202
    assert_error(mint(keyed, room.sid), 409)
    assert_error(keyed.http.post(f"{room.url}/join-token", headers=keyed.key_headers), 409)


JOIN_CASES = {
    "metadata a list": ({"display_name": "x", "metadata": ["a"]}, 422),
    "metadata a number": ({"display_name": "x", "metadata": 3}, 422),
    "metadata over 4 KiB": ({"display_name": "x", "metadata": {"k": "é" * 2100}}, 422),
    "no display_name with the shared token": ({}, 422),
}


@pytest.mark.parametrize("case", list(JOIN_CASES))
def test_joining_refuses_bad_metadata(keyed, case):
    room = Room.open(keyed, ())
    body, code = JOIN_CASES[case]
    assert_error(join(keyed, room.sid, room.session["join_token"], **body), code)
    assert keyed.http.get(room.url, headers=keyed.key_headers).json()["participants"] == []


def test_two_web_processes_racing_on_one_minted_token_admit_exactly_one(keyed_stack, keyed):
    second = processes.start_web(
        keyed_stack.env, keyed_stack.log_dir, name=f"{keyed_stack.env['SIGNALING_PREFIX']}-web2"
    )
    try:
        other = Api(f"http://127.0.0.1:{second.port}", api_key="k1")
        room = Room.open(keyed, ())
        token = minted(keyed, room.sid, display_name="Once")["join_token"]
        results: list[requests.Response] = []
        start = threading.Barrier(8)

        def racer(api: Api) -> None:
            start.wait()
            results.append(join(api, room.sid, token))

        threads = [threading.Thread(target=racer, args=(keyed if i % 2 else other,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(r.status_code for r in results) == [201] + [409] * 7, [r.text[:200] for r in results]
        participants = keyed.http.get(room.url, headers=keyed.key_headers).json()["participants"]
        assert [p["display_name"] for p in participants] == ["Once"]
    finally:
        second.stop()


# --- the shared token -------------------------------------------------------------------------


def test_rotating_the_shared_token_refuses_the_old_one(keyed):
    room = Room.open(keyed, ("alice",))
    old = room.session["join_token"]
    rotated = keyed.http.post(f"{room.url}/join-token", headers=keyed.key_headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["join_token"]
    assert set(rotated.json()) == {"join_token"} and new != old
    refused = assert_error(join(keyed, room.sid, old, display_name="bob"), 403)
    assert "join token" in refused["message"]
    bob, answer = member(keyed, room.sid, new, display_name="bob")
    assert answer["role"] == "publisher"  # the shared token joins as a publisher
    # Who joined before keeps going.
    alice = room.members[0]
    alice.wait_type("participantJoined", participant_id=bob.participant_id)
    assert alice.send({"text": "still here"}).status_code == 202


# --- subscribers ------------------------------------------------------------------------------


def test_a_subscriber_receives_but_never_publishes(keyed):
    room = Room.open(keyed, ("alice",))
    alice = room.members[0]
    sub, _ = member(keyed, room.sid, minted(keyed, room.sid, role="subscriber")["join_token"], display_name="sub")
    refused = assert_error(offer(sub, "publish", PUBLISH_SDP), 403)
    assert "subscriber" in refused["message"]
    assert_error(sub.candidates("publish", CANDIDATES), 403)

    # The publisher offers sendrecv; the media server is told its endpoint only receives.
    request_id = alice.offer(PUBLISH_SDP)
    answer = alice.wait_type("sdpAnswer", request_id=request_id)
    assert directions(answer["sdp"]) == {"recvonly"}
    sub.wait_type("streamPublished", participant_id=alice.participant_id)
    # A subscription offered sendrecv: its endpoint only sends.
    response = offer(sub, alice.participant_id, PUBLISH_SDP)
    assert response.status_code == 202, response.text
    got = sub.wait_type("sdpAnswer", request_id=response.json()["request_id"])
    assert directions(got["sdp"]) == {"sendonly"}
    assert sub.candidates(alice.participant_id, CANDIDATES).status_code == 202
    read = keyed.http.get(room.url, headers=sub.headers).json()
    assert {p["participant_id"]: p["publishing"] for p in read["participants"]} == {
        alice.participant_id: True,
        sub.participant_id: False,
    }


# --- removal and revocation -------------------------------------------------------------------


def _moderated_room(keyed) -> tuple[Room, Member]:
    """alice and bob (publishers, bob publishing) and mo, a moderator who joined with a minted token."""
    room = Room.open(keyed, ("alice", "bob"))
    mo, answer = member(keyed, room.sid, minted(keyed, room.sid, role="moderator", display_name="Mo")["join_token"])
    assert answer["role"] == "moderator"
    bob = room.members[1]
    request_id = bob.offer(PUBLISH_SDP)
    bob.wait_type("sdpAnswer", request_id=request_id)
    for who in (*room.members, mo):
        who.wait_type("streamPublished", participant_id=bob.participant_id)
    return room, mo


def assert_revoked(keyed, room: Room, gone: Member, reason: str) -> None:
    """Every route refuses the token with 409 but the poll, which drains what was queued."""
    alice = room.members[0]
    for response in (
        offer(gone, "publish", PUBLISH_SDP),
        offer(gone, alice.participant_id, SUBSCRIBE_SDP),
        gone.candidates("publish", CANDIDATES),
        gone.send({"text": "ghost"}),
        gone.send({"text": "ghost"}, to=alice.participant_id),
        gone.api.http.post(f"{gone.base}/rejoin", headers=gone.headers),
        gone.leave(),
        keyed.http.get(room.url, headers=gone.headers),
    ):
        assert_error(response, 409)
    left = gone.wait_type("participantLeft", participant_id=gone.participant_id)
    assert left["reason"] == reason
    assert gone.poll(wait=0) == []  # still answered, nothing more


def test_a_moderator_removes_a_participant_and_its_token_is_revoked(keyed):
    room, mo = _moderated_room(keyed)
    alice, bob = room.members
    assert remove(keyed, bob, mo.headers).status_code == 202
    for who in (alice, mo):
        assert who.wait_type("participantLeft", participant_id=bob.participant_id)["reason"] == "removed"
        who.wait_type("streamUnpublished", participant_id=bob.participant_id)
    assert_revoked(keyed, room, bob, "removed")
    # Removing again: already gone.
    assert_error(remove(keyed, bob, mo.headers), 409)
    participants = keyed.http.get(room.url, headers=mo.headers).json()["participants"]
    assert bob.participant_id not in {p["participant_id"] for p in participants}
    # Nobody got the ghost's messages.
    assert not [m for who in (alice, mo) for m in who.inbox if m["type"] == "message"]


def test_the_api_key_removes_a_participant(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    alice, bob = room.members
    assert remove(keyed, alice, keyed.key_headers).status_code == 202
    assert bob.wait_type("participantLeft", participant_id=alice.participant_id)["reason"] == "removed"
    assert_revoked(keyed, room.__class__(keyed, room.session, [bob]), alice, "removed")
    assert_error(remove(keyed, alice, keyed.key_headers), 409)
    ghost = Member(keyed, room.sid, uuid.uuid4().hex, "")
    assert_error(remove(keyed, ghost, keyed.key_headers), 404)


def test_only_a_moderator_of_the_session_removes_others(keyed):
    room, mo = _moderated_room(keyed)
    alice, bob = room.members
    sub, _ = member(keyed, room.sid, minted(keyed, room.sid, role="subscriber")["join_token"], display_name="sub")
    elsewhere = Room.open(keyed, ())
    other_mo, _ = member(
        keyed, elsewhere.sid, minted(keyed, elsewhere.sid, role="moderator")["join_token"], display_name="x"
    )
    for headers, code in (
        (alice.headers, 403),  # a publisher
        (sub.headers, 403),  # a subscriber
        (other_mo.headers, 403),  # a moderator of another session
        ({"X-API-Key": "k3"}, 401),
        ({}, 401),
    ):
        assert_error(remove(keyed, bob, headers), code)
    assert bob.send({"text": "still in"}).status_code == 202
    snapshot = keyed.http.get(room.url, headers=keyed.key_headers).json()
    assert bob.participant_id in {p["participant_id"] for p in snapshot["participants"]}
    # A moderator who has left removes nobody.
    assert mo.leave().status_code == 202
    assert_error(remove(keyed, bob, mo.headers), 409)


def test_an_own_leave_says_left_and_revokes_the_token(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    alice, bob = room.members
    assert alice.leave().status_code == 202
    assert bob.wait_type("participantLeft", participant_id=alice.participant_id)["reason"] == "left"
    assert_revoked(keyed, room.__class__(keyed, room.session, [bob]), alice, "left")


def test_a_moderator_may_leave_and_close_but_a_publisher_may_not_close(keyed):
    room, mo = _moderated_room(keyed)
    alice = room.members[0]
    assert_error(keyed.http.delete(room.url, headers=alice.headers), 403)
    assert keyed.http.delete(room.url, headers=mo.headers).status_code == 202
    for who in (*room.members, mo):
        who.wait_type("sessionClosed")
    assert keyed.http.get(room.url, headers=keyed.key_headers).json()["state"] == "closed"
    # Closed: every token is revoked, the moderator's too.
    assert_error(keyed.http.delete(room.url, headers=mo.headers), 409)
    assert_error(keyed.http.get(room.url, headers=alice.headers), 409)
