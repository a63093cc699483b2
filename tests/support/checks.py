"""Assertions shared by the error, access-control and idempotency tests.

Every refused request must (1) answer with the documented status, (2) in the exact error
shape, never HTML and never a stack trace, and (3) change nothing: the session reads the
same afterwards and no participant's queue receives anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pymongo
import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support.api import Api, Member

ERROR_KEYS = {"code", "status", "message", "errors"}
TOKEN_SALT = "signaling.participant"  # what signaling_web.auth signs participant tokens with
LEAKS = ("Traceback", 'File "', "<html", "<!doctype", "werkzeug", "mongoengine", "pymongo", "kombu")


def assert_error(response: requests.Response, *codes: int) -> dict:
    """The response is one of `codes`, JSON, in the documented shape, and leaks nothing."""
    text = response.text
    assert response.status_code in codes, f"expected {codes}, got {response.status_code}: {text[:500]}"
    return assert_error_body(response.status_code, response.headers.get("Content-Type", ""), text, response.json)


def assert_error_body(status_code: int, content_type: str, text: str, parse) -> dict:
    """JSON in the documented error shape, naming no internal component; `parse()` gives the body."""
    assert content_type.startswith("application/json"), content_type
    for leak in LEAKS:
        assert leak.lower() not in text.lower(), f"{leak!r} in error body: {text[:500]}"
    body = parse()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert body["code"] == status_code, body
    assert isinstance(body["status"], str) and body["status"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["errors"], dict), body
    return body


def wait_until(condition, what: str, timeout: float = 20.0):
    """Polls until `condition()` is truthy and returns it: for work a worker does after the last
    message a client can wait for. The deadline only bounds a failure; nothing asserts on time."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return result


def sign_token(secret: str, session_id: str, participant_id: str, age_s: float = 0.0) -> str:
    """A participant token as the service would sign it, `age_s` seconds ago."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_s)

    serializer = URLSafeTimedSerializer(secret, salt=TOKEN_SALT, signer=PastSigner)
    return serializer.dumps({"s": session_id, "p": participant_id})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def session_documents(mongodb_uri: str) -> int:
    """How many sessions the database holds (what a refused creation must not change)."""
    client = pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        return client.get_default_database()["sessions"].count_documents({})
    finally:
        client.close()


@dataclass
class Room:
    """A session with members whose queues have been drained of their join announcements."""

    api: Api
    session: dict
    members: list[Member] = field(default_factory=list)

    @property
    def sid(self) -> str:
        return self.session["session_id"]

    @property
    def url(self) -> str:
        return f"{self.api.base}/api/v1/sessions/{self.sid}"

    @classmethod
    def open(cls, api: Api, names: tuple[str, ...] = ("alice", "bob"), **create) -> Room:
        room = cls(api, api.create_session(**create))
        for name in names:
            room.add(name)
        return room

    def add(self, name: str) -> Member:
        member = self.api.join(self.session, name)
        self.members.append(member)
        # Each earlier member hears of this join; the newcomer hears of its own.
        for other in self.members:
            other.wait_type("participantJoined", participant_id=member.participant_id)
        return member

    def snapshot(self, reader: Member | None = None) -> dict:
        reader = reader or self.members[0]
        headers = reader.headers if reader.api.api_key is None else reader.api.key_headers
        response = self.api.http.get(self.url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        body["participants"] = sorted(body["participants"], key=lambda p: p["participant_id"])
        return body

    def assert_quiet(self, *members: Member, wait: float = 1.0) -> None:
        """No member (default: all) receives anything new within `wait` seconds."""
        members = members or tuple(self.members)
        deadline = time.monotonic() + wait
        for member in members:
            got = member.poll(wait=max(0.0, deadline - time.monotonic()))
            assert got == [], f"{member.participant_id} received {got}"
