"""POST /sessions/{sid}/messages with the API key: the application's backend speaks to a session (or
one participant) and the message arrives `from` "server"; a participant's token still sends as itself."""

from __future__ import annotations

import uuid

import pytest

from tests.support.checks import Room, assert_error

pytestmark = pytest.mark.integration


def send(api, session_id: str, body: dict, headers: dict | None = None):
    return api.http.post(
        f"{api.base}/api/v1/sessions/{session_id}/messages",
        json=body,
        headers=api.key_headers if headers is None else headers,
    )


def test_a_broadcast_from_the_backend_reaches_everyone_from_server(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    assert send(keyed, room.sid, {"payload": {"notice": "recording starts"}}).status_code == 202
    for member in room.members:
        got = member.wait_type("message")
        assert got["from"] == "server" and got["payload"] == {"notice": "recording starts"}


def test_a_direct_message_from_the_backend_reaches_only_its_recipient(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    alice, bob = room.members
    assert send(keyed, room.sid, {"payload": {"for": "bob"}, "to": bob.participant_id}).status_code == 202
    assert send(keyed, room.sid, {"payload": {"for": "everyone"}}).status_code == 202
    assert bob.wait_type("message", payload={"for": "bob"})["from"] == "server"
    # alice gets the broadcast sent after the direct message, and never the direct one.
    alice.wait_type("message", payload={"for": "everyone"})
    assert [m["payload"] for m in alice.inbox if m["type"] == "message"] == [{"for": "everyone"}]


def test_a_participant_token_still_sends_as_that_participant(keyed):
    room = Room.open(keyed, ("alice", "bob"))
    alice, bob = room.members
    assert alice.send({"text": "hi"}).status_code == 202
    assert bob.wait_type("message")["from"] == alice.participant_id


def test_the_backends_message_to_a_closed_or_unknown_session_or_recipient(keyed):
    room = Room.open(keyed, ("alice",))
    body = assert_error(send(keyed, room.sid, {"payload": {}, "to": uuid.uuid4().hex}), 404)
    assert "participant" in body["message"]
    assert_error(send(keyed, uuid.uuid4().hex, {"payload": {}}), 404)
    left = Room.open(keyed, ("gone", "stays"))
    assert left.members[0].leave().status_code == 202
    assert_error(send(keyed, left.sid, {"payload": {}, "to": left.members[0].participant_id}), 404)
    assert keyed.http.delete(room.url, headers=keyed.key_headers).status_code == 202
    assert_error(send(keyed, room.sid, {"payload": {"late": True}}), 409)


@pytest.mark.parametrize(
    "body",
    [{}, {"payload": "text"}, {"payload": {}, "to": ""}, {"payload": {"x": "y" * 17000}}, {"payload": {}, "extra": 1}],
    ids=["no payload", "payload not an object", "empty to", "payload too large", "unknown field"],
)
def test_the_backends_bad_body_is_422(keyed, body):
    room = Room.open(keyed, ("alice",))
    assert_error(send(keyed, room.sid, body), 422)


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "k3"}, {"X-API-Key": "K1"}], ids=["no credential", "wrong key", "key in another case"]
)
def test_without_a_valid_key_or_token_nothing_is_sent(keyed, headers):
    room = Room.open(keyed, ("alice",))
    assert_error(send(keyed, room.sid, {"payload": {"forged": True}}, headers=headers), 401)
    assert send(keyed, room.sid, {"payload": {"real": True}}).status_code == 202
    assert room.members[0].wait_type("message")["payload"] == {"real": True}  # the first to arrive
