"""Access control: every participant route refuses every credential but its owner's and
changes nothing; API keys guard session creation and deletion when they are configured."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

import pytest
import requests

from models import PUBLISH
from settings import load_settings
from tests.conftest import KEYS, read_fixture
from tests.support.api import Member
from tests.support.checks import Room, assert_error, bearer, session_documents, sign_token

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
CANDIDATES = json.loads(read_fixture("chromium-publish.candidates.json"))
PENDING = {"text": "for alice only", "n": 1}


@dataclass
class Scene:
    """alice (the victim, publishing) and mallory share a session; oscar is in another one."""

    room: Room
    other: Room
    secret: str
    ttl_s: int

    @property
    def alice(self) -> Member:
        return self.room.members[0]

    @property
    def mallory(self) -> Member:
        return self.room.members[1]

    @property
    def oscar(self) -> Member:
        return self.other.members[0]


def drain(*members: Member) -> None:
    for member in members:
        while member.poll(wait=0.1):
            pass


@pytest.fixture
def scene(stack, api) -> Scene:
    room = Room.open(api, ("alice", "mallory"))
    alice, mallory = room.members
    request_id = alice.offer(PUBLISH_SDP)
    alice.wait_type("sdpAnswer", request_id=request_id)
    alice.wait_type("iceGatheringDone", stream=PUBLISH)
    for member in room.members:
        member.wait_type("streamPublished", participant_id=alice.participant_id)
    other = Room.open(api, ("oscar",))
    drain(alice, mallory, other.members[0])
    # A direct message waits, unread, in alice's queue: a poll by anyone else must not take it.
    assert mallory.send(PENDING, to=alice.participant_id).status_code == 202
    settings = load_settings(stack.env)
    return Scene(room, other, stack.env["SECRET_KEY"], settings.token_ttl_s)


def _tamper(token: str, session_id: str, participant_id: str) -> str:
    """A real token whose payload is swapped to claim someone else, signature kept."""
    _payload, timestamp, signature = token.rsplit(".", 2)
    claim = json.dumps({"s": session_id, "p": participant_id}, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(claim).decode().rstrip("=")
    return ".".join((payload, timestamp, signature))


# name: (headers for the attack, expected status)
def credentials(s: Scene) -> dict[str, tuple[dict, int]]:
    sid, victim = s.room.sid, s.alice.participant_id
    return {
        "another participant's token": (s.mallory.headers, 403),
        "a token of another session": (s.oscar.headers, 403),
        "victim's id signed for another session": (bearer(sign_token(s.secret, s.other.sid, victim)), 403),
        "expired token": (bearer(sign_token(s.secret, sid, victim, age_s=s.ttl_s + 120)), 401),
        "forged token (wrong secret)": (bearer(sign_token("not-the-secret", sid, victim)), 401),
        "tampered token (payload swapped)": (bearer(_tamper(s.mallory.token, sid, victim)), 401),
        "garbage token": (bearer("not.a.token"), 401),
        "no token": ({}, 401),
        "token under another scheme": ({"Authorization": f"Basic {s.alice.token}"}, 401),
    }


CASES = [
    "another participant's token",
    "a token of another session",
    "victim's id signed for another session",
    "expired token",
    "forged token (wrong secret)",
    "tampered token (payload swapped)",
    "garbage token",
    "no token",
    "token under another scheme",
]

# name: (method, path under the session or participant, body, session-wide)
ROUTES = {
    "leave": ("DELETE", "{p}", None, False),
    "rejoin": ("POST", "{p}/rejoin", None, False),
    "offer": ("POST", "{p}/offers", {"stream": PUBLISH, "sdp": PUBLISH_SDP}, False),
    "candidates": ("POST", "{p}/candidates", {"stream": PUBLISH, "candidates": CANDIDATES}, False),
    "poll messages": ("GET", "{p}/messages?after=1000000&wait=0", None, False),
    "send a message": ("POST", "{s}/messages", {"payload": {"text": "forged"}}, True),
    "read the session": ("GET", "{s}", None, True),
    "close the session": ("DELETE", "{s}", None, True),
}


# Any participant may send to its session and read it, acting as the token's holder; for those
# routes another participant's token is not a wrong credential. Closing needs the API key or a
# moderator's token: every token of this open deployment (publishers all) is refused there.
MEMBER_IS_ENOUGH = {"another participant's token"}
MODERATOR_ONLY = {"close the session"}
MATRIX = [
    (route, case)
    for route, (_m, _p, _b, session_wide) in ROUTES.items()
    for case in CASES
    if not (session_wide and case in MEMBER_IS_ENOUGH and route not in MODERATOR_ONLY)
]


@pytest.mark.parametrize(("route", "case"), MATRIX)
def test_refused_and_nothing_changes(scene, route, case):
    method, path, body, _session_wide = ROUTES[route]
    headers, code = credentials(scene)[case]
    room, alice = scene.room, scene.alice
    before = room.snapshot()
    assert before["state"] == "open"
    assert {p["participant_id"]: (p["state"], p["publishing"]) for p in before["participants"]}[
        alice.participant_id
    ] == ("joined", True)
    url = path.format(p=alice.base, s=room.url)
    for _attempt in range(2):  # twice: a poll that got through would have trimmed the outbox
        response = room.api.http.request(method, url, json=body, headers=headers)
        error = assert_error(response, code)
        assert "for alice only" not in response.text
    if case == "expired token":
        assert "expired" in error["message"]
    # The victim is still joined and publishing; the session is unchanged.
    assert room.snapshot() == before
    # Only the message sent before the attack reaches alice; nobody else gets anything
    # (no participantLeft, streamUnpublished, sdpAnswer, message or sessionClosed).
    got = alice.wait_type("message")
    assert (got["from"], got["payload"]) == (scene.mallory.participant_id, PENDING)
    assert [m for m in alice.inbox if m["type"] == "message"] == [got]
    room.assert_quiet(alice, scene.mallory, scene.oscar)


def test_a_publisher_never_closes_its_session_with_its_token(scene):
    """Closing is the API key's or a moderator's (issue 14): this open deployment has publishers only."""
    room, alice = scene.room, scene.alice
    before = room.snapshot()
    for headers in (alice.headers, {**alice.headers, "X-API-Key": ""}):
        assert_error(room.api.http.delete(room.url, headers=headers), 403)
    assert room.snapshot() == before and before["state"] == "open"


def test_a_fresh_token_signed_like_the_service_is_accepted(scene):
    """The control for the expired and forged cases: a token built the same way, but valid."""
    room, alice = scene.room, scene.alice
    token = sign_token(scene.secret, room.sid, alice.participant_id, age_s=scene.ttl_s - 300)
    response = room.api.http.get(room.url, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["session_id"] == room.sid


def test_api_key_does_not_stand_in_for_a_participant_token(scene):
    room, alice = scene.room, scene.alice
    before = room.snapshot()
    for method, path, body, _session_wide in ROUTES.values():
        if path == "{s}":
            continue  # reading and closing a session are what API keys are for
        response = room.api.http.request(
            method, path.format(p=alice.base, s=room.url), json=body, headers={"X-API-Key": "anything"}
        )
        assert_error(response, 401)
    assert room.snapshot() == before


# --- API keys -------------------------------------------------------------------------------

WRONG_KEYS = {
    "no key": {},
    "empty key": {"X-API-Key": ""},
    "wrong key": {"X-API-Key": "k3"},
    "key in another case": {"X-API-Key": "K1"},
    "the configured list itself": {"X-API-Key": "k1,k2"},
    "a prefix of a key": {"X-API-Key": "k"},
    "key as a bearer token": {"Authorization": "Bearer k1"},
    # Header bytes outside ASCII once made compare_digest raise TypeError: a 500 per request.
    "non-ASCII key (UTF-8)": {"X-API-Key": "k1é".encode()},
    "non-ASCII key (a lone 0xff byte)": {"X-API-Key": b"k1\xff"},
}


@pytest.mark.parametrize("case", list(WRONG_KEYS))
def test_session_creation_needs_a_valid_key(keyed_stack, case):
    count = session_documents(keyed_stack.env["MONGODB_URI"])
    response = requests.post(f"{keyed_stack.base_url}/api/v1/sessions", json={"name": "x"}, headers=WRONG_KEYS[case])
    assert_error(response, 401)
    assert session_documents(keyed_stack.env["MONGODB_URI"]) == count


@pytest.mark.parametrize("key", KEYS)
def test_session_creation_with_a_valid_key(keyed_stack, key):
    count = session_documents(keyed_stack.env["MONGODB_URI"])
    response = requests.post(
        f"{keyed_stack.base_url}/api/v1/sessions", json={"name": "keyed"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 201, response.text
    assert session_documents(keyed_stack.env["MONGODB_URI"]) == count + 1
    session = response.json()
    # The key reads the session; joining needs only the join token.
    detail = requests.get(f"{keyed_stack.base_url}/api/v1/sessions/{session['session_id']}", headers={"X-API-Key": key})
    assert detail.status_code == 200 and detail.json()["name"] == "keyed"
    joined = requests.post(
        f"{keyed_stack.base_url}/api/v1/sessions/{session['session_id']}/participants",
        json={"display_name": "alice", "join_token": session["join_token"]},
    )
    assert joined.status_code == 201, joined.text


@pytest.mark.parametrize("case", list(WRONG_KEYS) + ["a participant's token", "wrong key with a participant's token"])
def test_session_deletion_needs_a_valid_key_or_a_moderator(keyed, case):
    """A publisher's token is a valid credential that does not allow closing (403); see test_roles
    for a moderator's."""
    room = Room.open(keyed, ("alice", "bob"))
    alice = room.members[0]
    headers = {
        "a participant's token": alice.headers,
        "wrong key with a participant's token": {**alice.headers, "X-API-Key": "k3"},
    }.get(case)
    headers = WRONG_KEYS[case] if headers is None else headers
    before = room.snapshot()
    response = keyed.http.delete(room.url, headers=headers)
    assert_error(response, 403 if "participant's token" in case else 401)
    assert room.snapshot() == before and before["state"] == "open"
    room.assert_quiet()  # no sessionClosed


def test_session_deletion_with_a_valid_key(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    response = keyed.http.delete(room.url, headers={"X-API-Key": "k2"})
    assert response.status_code == 202, response.text
    for member in room.members:
        member.wait_type("sessionClosed")
    assert room.snapshot()["state"] == "closed"


def test_reading_a_session_with_a_wrong_key(keyed):
    room = Room.open(keyed, ("alice",))
    outsider = Room.open(keyed, ("oscar",)).members[0]
    for headers, code in (({}, 401), ({"X-API-Key": "k3"}, 401), (outsider.headers, 403)):
        assert_error(keyed.http.get(room.url, headers=headers), code)


def test_unknown_session_with_a_valid_key(keyed):
    assert_error(keyed.http.get(f"{keyed.base}/api/v1/sessions/{uuid.uuid4().hex}", headers=keyed.key_headers), 404)
    assert_error(keyed.http.delete(f"{keyed.base}/api/v1/sessions/{uuid.uuid4().hex}", headers=keyed.key_headers), 404)
