"""Every limit and validation of the REST contract answers its documented 4xx, in the error
shape, and changes nothing (the session reads the same, no queue receives anything)."""

from __future__ import annotations

import json
import secrets
import threading
import uuid

import pytest
import requests

from models import PUBLISH
from tests.conftest import FIXTURES, read_fixture
from tests.support import emulator_control
from tests.support.checks import Room, assert_error, bearer, session_documents, sign_token, wait_until

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
CANDIDATE = json.loads(read_fixture("chromium-publish.candidates.json"))[0]
KIB = 1024


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = sdp.splitlines()
    first_m = next(i for i, line in enumerate(lines) if line.startswith("m="))
    sections: list[list[str]] = []
    for line in lines[first_m:]:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return lines[:first_m], sections


def _join(head: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join(head + [line for s in sections for line in s]) + "\r\n"


def sdp_too_big() -> str:
    padding = [f"a=x-padding-{i}:{'x' * 1000}" for i in range(70)]
    head, sections = _sections(PUBLISH_SDP)
    sections[0].extend(padding)
    sdp = _join(head, sections)
    assert 64 * KIB < len(sdp.encode()) < 256 * KIB - 4 * KIB
    return sdp


def sdp_of_size(size: int) -> str:
    """A valid offer (the fixture plus one padding attribute) of exactly `size` bytes."""
    head, sections = _sections(PUBLISH_SDP)
    padding = "a=x-padding:"
    base = len(_join(head, [sections[0] + [padding], *sections[1:]]).encode())
    sections[0].append(padding + "x" * (size - base))
    sdp = _join(head, sections)
    assert len(sdp.encode()) == size
    return sdp


def candidate_of_size(size: int) -> dict:
    """A fixture candidate padded with an extension attribute to exactly `size` bytes."""
    text = CANDIDATE["candidate"] + " x-padding "
    candidate = {**CANDIDATE, "candidate": text + "x" * (size - len(text))}
    assert len(candidate["candidate"].encode()) == size
    return candidate


def sdp_not_v0() -> str:
    return PUBLISH_SDP.replace("v=0", "v=1", 1)


def sdp_v0_not_first() -> str:
    head, sections = _sections(PUBLISH_SDP)
    return _join([head[1], head[0], *head[2:]], sections)


def sdp_without_m_line() -> str:
    head, _ = _sections(PUBLISH_SDP)
    return _join(head, [])


def sdp_mline_without_mid() -> str:
    head, sections = _sections(PUBLISH_SDP)
    sections[1] = [line for line in sections[1] if not line.startswith("a=mid:")]
    return _join(head, sections)


def sdp_mline_with_two_mids() -> str:
    head, sections = _sections(PUBLISH_SDP)
    sections[0].append("a=mid:extra")
    return _join(head, sections)


@pytest.fixture
def room(api) -> Room:
    return Room.open(api)


# --- offers ---------------------------------------------------------------------------------

OFFER_CASES = {
    # 413 is for a whole body over MAX_BODY_BYTES (256 KiB); a field over its own limit is 422.
    "sdp larger than 64 KiB": (lambda r: {"stream": PUBLISH, "sdp": sdp_too_big()}, (422,), "sdp"),
    "sdp of 64 KiB + 1 byte": (lambda r: {"stream": PUBLISH, "sdp": sdp_of_size(64 * KIB + 1)}, (422,), "sdp"),
    "sdp not starting v=0": (lambda r: {"stream": PUBLISH, "sdp": sdp_not_v0()}, (422,), "sdp"),
    "sdp with v=0 second": (lambda r: {"stream": PUBLISH, "sdp": sdp_v0_not_first()}, (422,), "sdp"),
    "sdp without m= line": (lambda r: {"stream": PUBLISH, "sdp": sdp_without_m_line()}, (422,), "sdp"),
    "m-line without a=mid": (lambda r: {"stream": PUBLISH, "sdp": sdp_mline_without_mid()}, (422,), "sdp"),
    "m-line with two a=mid": (lambda r: {"stream": PUBLISH, "sdp": sdp_mline_with_two_mids()}, (422,), "sdp"),
    "empty sdp": (lambda r: {"stream": PUBLISH, "sdp": ""}, (422,), "sdp"),
    "sdp not a string": (lambda r: {"stream": PUBLISH, "sdp": {"v": 0}}, (422,), "sdp"),
    "no sdp": (lambda r: {"stream": PUBLISH}, (422,), "sdp"),
    "no stream": (lambda r: {"sdp": PUBLISH_SDP}, (422,), "stream"),
    "unknown field": (lambda r: {"stream": PUBLISH, "sdp": PUBLISH_SDP, "type": "offer"}, (422,), "type"),
    "stream is own id": (lambda r: {"stream": r.members[0].participant_id, "sdp": PUBLISH_SDP}, (422,), "stream"),
    "stream names an unknown participant": (lambda r: {"stream": uuid.uuid4().hex, "sdp": PUBLISH_SDP}, (404,), None),
}


@pytest.mark.parametrize("case", list(OFFER_CASES))
def test_bad_offer_is_refused_and_nothing_is_processed(room, case):
    make_body, codes, field_name = OFFER_CASES[case]
    alice = room.members[0]
    before = room.snapshot()
    response = room.api.http.post(f"{alice.base}/offers", json=make_body(room), headers=alice.headers)
    body = assert_error(response, *codes)
    if field_name and response.status_code == 422:
        assert field_name in json.dumps(body["errors"]), body
    assert room.snapshot() == before
    room.assert_quiet()  # no sdpAnswer, no error message, no streamPublished


def test_sdp_of_exactly_64_kib_is_accepted(room):
    alice, bob = room.members
    request_id = alice.offer(sdp_of_size(64 * KIB))
    assert alice.wait_type("sdpAnswer", request_id=request_id)["sdp"].startswith("v=0")
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    assert not [m for m in alice.inbox if m["type"] == "error"]


def test_sdp_over_64_kib_says_which_limit(room):
    alice = room.members[0]
    response = room.api.http.post(
        f"{alice.base}/offers", json={"stream": PUBLISH, "sdp": sdp_of_size(64 * KIB + 1)}, headers=alice.headers
    )
    body = assert_error(response, 422)
    assert "65536 bytes" in json.dumps(body["errors"]), body


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.sdp")))
def test_every_browser_fixture_sdp_is_accepted(api, fixture):
    room = Room.open(api)
    alice, bob = room.members
    sdp = read_fixture(fixture)
    stream = PUBLISH
    if "subscribe" in fixture:
        # A recvonly offer is what a subscriber sends: subscribe bob to alice's stream.
        alice.offer(PUBLISH_SDP)
        alice.wait_type("sdpAnswer")
        bob.wait_type("streamPublished", participant_id=alice.participant_id)
        subscriber, stream = bob, alice.participant_id
    else:
        subscriber = alice
    response = api.http.post(
        f"{subscriber.base}/offers", json={"stream": stream, "sdp": sdp}, headers=subscriber.headers
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    answer = subscriber.wait_type("sdpAnswer", request_id=request_id)
    assert answer["stream"] == stream and answer["sdp"].startswith("v=0")
    # The answer has as many m-lines as the offer.
    assert answer["sdp"].count("\nm=") == sdp.count("\nm=")
    assert not [m for m in subscriber.inbox if m["type"] == "error"]


# --- candidates -----------------------------------------------------------------------------

CANDIDATE_CASES = {
    "candidate longer than 1 KiB": {
        "stream": PUBLISH,
        "candidate": {**CANDIDATE, "candidate": "candidate:" + "1" * (KIB + 10)},
    },
    "candidate not starting candidate:": {
        "stream": PUBLISH,
        "candidate": {**CANDIDATE, "candidate": "a=" + CANDIDATE["candidate"]},
    },
    "candidate without sdpMid and sdpMLineIndex": {
        "stream": PUBLISH,
        "candidate": {"candidate": CANDIDATE["candidate"]},
    },
    "candidate with null sdpMid and sdpMLineIndex": {
        "stream": PUBLISH,
        "candidate": {"candidate": CANDIDATE["candidate"], "sdpMid": None, "sdpMLineIndex": None},
    },
    "both candidate and candidates": {"stream": PUBLISH, "candidate": CANDIDATE, "candidates": [CANDIDATE]},
    "neither candidate nor candidates": {"stream": PUBLISH},
    "empty candidates list": {"stream": PUBLISH, "candidates": []},
    "one bad candidate in a list": {"stream": PUBLISH, "candidates": [CANDIDATE, {**CANDIDATE, "candidate": "bogus"}]},
    "candidate is a string": {"stream": PUBLISH, "candidate": CANDIDATE["candidate"]},
    "unknown field in candidate": {"stream": PUBLISH, "candidate": {**CANDIDATE, "port": 9}},
    "no stream": {"candidate": CANDIDATE},
    "fractional sdpMLineIndex": {"stream": PUBLISH, "candidate": {**CANDIDATE, "sdpMLineIndex": 0.5}},
    "negative sdpMLineIndex": {"stream": PUBLISH, "candidate": {**CANDIDATE, "sdpMLineIndex": -1}},
    "candidate of 1 KiB + 1 byte": {"stream": PUBLISH, "candidate": candidate_of_size(KIB + 1)},
    "candidate of 1 KiB + 1 byte in a list": {"stream": PUBLISH, "candidates": [CANDIDATE, candidate_of_size(KIB + 1)]},
}


@pytest.mark.parametrize("case", list(CANDIDATE_CASES))
def test_bad_candidate_is_refused_and_nothing_is_queued(room, case):
    alice = room.members[0]
    before = room.snapshot()
    response = room.api.http.post(f"{alice.base}/candidates", json=CANDIDATE_CASES[case], headers=alice.headers)
    assert_error(response, 422)
    # Had anything been buffered, the next offer would still answer; nothing was sent to anyone.
    assert room.snapshot() == before
    room.assert_quiet()


def test_candidate_for_unknown_or_own_stream(room):
    alice = room.members[0]
    for stream, code in ((uuid.uuid4().hex, 404), (alice.participant_id, 422)):
        response = room.api.http.post(
            f"{alice.base}/candidates", json={"stream": stream, "candidate": CANDIDATE}, headers=alice.headers
        )
        assert_error(response, code)
    room.assert_quiet()


def test_candidate_of_exactly_1_kib_is_accepted_and_reaches_the_endpoint(room, db, kms_url):
    from models import Endpoint

    alice = room.members[0]
    alice.wait_type("sdpAnswer", request_id=alice.offer(PUBLISH_SDP))
    candidate = candidate_of_size(KIB)
    response = room.api.http.post(
        f"{alice.base}/candidates", json={"stream": PUBLISH, "candidate": candidate}, headers=alice.headers
    )
    assert response.status_code == 202, response.text
    endpoint = Endpoint.find(alice.participant_id, PUBLISH).kurento.id
    wait_until(lambda: candidate in emulator_control.remote_candidates(kms_url, endpoint), "candidate applied")


def test_every_fixture_candidate_is_accepted(room):
    alice = room.members[0]
    for path in sorted(FIXTURES.glob("*.candidates.json")):
        candidates = json.loads(path.read_text())
        assert alice.candidates(PUBLISH, candidates).status_code == 202, path.name
        one = {"stream": PUBLISH, "candidate": candidates[0]}
        response = room.api.http.post(f"{alice.base}/candidates", json=one, headers=alice.headers)
        assert response.status_code == 202, response.text
    # The end-of-candidates marker (empty string) is accepted too.
    end = {"stream": PUBLISH, "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}}
    assert room.api.http.post(f"{alice.base}/candidates", json=end, headers=alice.headers).status_code == 202


# --- joining --------------------------------------------------------------------------------

JOIN_CASES = {
    "empty display_name": (lambda s: {"display_name": "", "join_token": s["join_token"]}, 422),
    "65-character display_name": (lambda s: {"display_name": "x" * 65, "join_token": s["join_token"]}, 422),
    "no display_name": (lambda s: {"join_token": s["join_token"]}, 422),
    "display_name not a string": (lambda s: {"display_name": 7, "join_token": s["join_token"]}, 422),
    "no join_token": (lambda s: {"display_name": "eve"}, 422),
    "unknown field": (lambda s: {"display_name": "eve", "join_token": s["join_token"], "admin": True}, 422),
    "wrong join_token": (lambda s: {"display_name": "eve", "join_token": secrets.token_urlsafe(24)}, 403),
    "another session's join_token": (lambda s: {"display_name": "eve", "join_token": s["other_token"]}, 403),
}


@pytest.mark.parametrize("case", list(JOIN_CASES))
def test_bad_join_is_refused_and_nobody_joins(api, room, case):
    make_body, code = JOIN_CASES[case]
    session = {**room.session, "other_token": api.create_session()["join_token"]}
    before = room.snapshot()
    response = api.http.post(f"{room.url}/participants", json=make_body(session))
    assert_error(response, code)
    assert room.snapshot() == before
    room.assert_quiet()  # no participantJoined


def test_display_name_of_64_characters_is_accepted(api):
    session = api.create_session()
    response = api.http.post(
        f"{api.base}/api/v1/sessions/{session['session_id']}/participants",
        json={"display_name": "é" * 64, "join_token": session["join_token"]},
    )
    assert response.status_code == 201, response.text
    assert response.json()["participants"][0]["display_name"] == "é" * 64


def test_joining_an_unknown_session(api):
    response = api.http.post(
        f"{api.base}/api/v1/sessions/{uuid.uuid4().hex}/participants", json={"display_name": "eve", "join_token": "x"}
    )
    assert_error(response, 404)


def test_joining_a_closed_session(keyed):
    api = keyed  # closing a session needs the API key
    room = Room.open(api)
    alice = room.members[0]
    assert api.http.delete(room.url, headers=api.key_headers).status_code == 202
    for member in room.members:
        member.wait_type("sessionClosed")
    before = room.snapshot()
    assert before["state"] == "closed"
    response = api.http.post(
        f"{room.url}/participants", json={"display_name": "late", "join_token": room.session["join_token"]}
    )
    assert_error(response, 409)
    assert room.snapshot() == before
    # Nor does a closed session take offers or messages.
    assert_error(
        api.http.post(f"{alice.base}/offers", json={"stream": PUBLISH, "sdp": PUBLISH_SDP}, headers=alice.headers), 409
    )
    assert_error(alice.send({"text": "anyone?"}), 409)
    room.assert_quiet()


def test_sixteen_joins_at_once_into_a_session_of_eight(api):
    session = api.create_session(max_participants=8)
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    barrier = threading.Barrier(16)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def join(i: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            response = http.post(url, json={"display_name": f"p{i}", "join_token": session["join_token"]}, timeout=60)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 8 + [409] * 8, [(r.status_code, r.text[:200]) for r in results]
    for refused in (r for r in results if r.status_code == 409):
        assert_error(refused, 409)
    admitted = [r.json() for r in results if r.status_code == 201]
    first = admitted[0]
    reader = {"Authorization": f"Bearer {first['token']}"}
    detail = api.http.get(f"{api.base}/api/v1/sessions/{session['session_id']}", headers=reader).json()
    assert sorted(p["participant_id"] for p in detail["participants"]) == sorted(a["participant_id"] for a in admitted)
    # The count is exact, not merely capped: one leaves, exactly one more fits.
    leave = api.http.delete(f"{url}/{first['participant_id']}", headers=reader)
    assert leave.status_code == 202
    again = [
        api.http.post(url, json={"display_name": f"late{i}", "join_token": session["join_token"]}) for i in range(2)
    ]
    assert [r.status_code for r in again] == [201, 409], [r.text for r in again]


# --- sessions -------------------------------------------------------------------------------

CREATE_CASES = {
    "max_participants 0": ({"max_participants": 0}, 422),
    "max_participants 257": ({"max_participants": 257}, 422),
    "max_participants negative": ({"max_participants": -1}, 422),
    "max_participants not a number": ({"max_participants": "many"}, 422),
    "max_participants fractional": ({"max_participants": 2.5}, 422),
    "max_participants a numeric string": ({"max_participants": "8"}, 422),
    "max_participants boolean": ({"max_participants": True}, 422),
    "name not a string": ({"name": ["a"]}, 422),
    "name of 129 characters": ({"name": "n" * 129}, 422),
    "unknown field": ({"name": "x", "owner": "eve"}, 422),
    "body is a list": ([{"name": "x"}], 422),
    "body is a string": ("standup", 422),
}


@pytest.mark.parametrize("case", list(CREATE_CASES))
def test_bad_session_creation_creates_nothing(stack, api, case):
    body, code = CREATE_CASES[case]
    count = session_documents(stack.env["MONGODB_URI"])
    response = api.http.post(f"{api.base}/api/v1/sessions", json=body)
    assert_error(response, code)
    assert session_documents(stack.env["MONGODB_URI"]) == count


def test_max_participants_defaults_to_16(api):
    session = api.create_session()  # no max_participants
    for n in range(16):
        api.join(session, f"p{n}")
    response = api.http.post(
        f"{api.base}/api/v1/sessions/{session['session_id']}/participants",
        json={"display_name": "seventeenth", "join_token": session["join_token"]},
    )
    body = assert_error(response, 409)
    assert "full (16 participants)" in body["message"], body


@pytest.mark.parametrize("size", [1, 256])
def test_max_participants_bounds_are_accepted(api, size):
    assert api.create_session(max_participants=size)["state"] == "open"


MALFORMED_BODIES = {
    "truncated JSON": b'{"name": "x"',
    "not JSON": b"name=x&max_participants=3",
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "JSON with trailing garbage": b'{"name": "x"} {}',
}


@pytest.mark.parametrize("case", list(MALFORMED_BODIES))
def test_malformed_json_body(stack, api, room, case):
    count = session_documents(stack.env["MONGODB_URI"])
    headers = {"Content-Type": "application/json"}
    assert_error(api.http.post(f"{api.base}/api/v1/sessions", data=MALFORMED_BODIES[case], headers=headers), 400, 422)
    alice = room.members[0]
    for path in (f"{alice.base}/offers", f"{alice.base}/candidates", f"{room.url}/messages"):
        response = api.http.post(path, data=MALFORMED_BODIES[case], headers={**headers, **alice.headers})
        assert_error(response, 400, 422)
    assert session_documents(stack.env["MONGODB_URI"]) == count
    room.assert_quiet()


HOSTILE_JSON = {
    "NaN in a payload": b'{"payload": {"x": NaN}}',
    "Infinity in a payload": b'{"payload": {"x": [1, -Infinity]}}',
    "lone surrogate in a payload": b'{"payload": {"x": "\\ud800"}}',
    "lone surrogate in a key": b'{"payload": {"\\udfff": 1}}',
    "payload nested 100 deep": b'{"payload": ' + b'{"x": ' * 100 + b"1" + b"}" * 100 + b"}",
    "payload nested 990 deep": b'{"payload": ' + b'{"x": ' * 990 + b"1" + b"}" * 990 + b"}",
    "array nested 200000 deep": b"[" * 200_000,
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_hostile_json_is_refused_and_never_relayed(room, case):
    """A payload a browser's JSON.parse cannot read would wedge every recipient's poll."""
    alice, bob = room.members
    headers = {"Content-Type": "application/json", **alice.headers}
    for url in (f"{room.url}/messages", f"{room.api.base}/api/v1/sessions", f"{alice.base}/offers"):
        assert_error(room.api.http.post(url, data=HOSTILE_JSON[case], headers=headers), 400, 422)
    # With an Idempotency-Key (the key's scope reads the body too), still no 5xx.
    idem = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    assert_error(room.api.http.post(f"{room.url}/messages", data=HOSTILE_JSON[case], headers=idem), 400, 422)
    room.assert_quiet()
    # Delivery still works, and every poll answer is strict JSON.
    assert alice.send({"ok": True}, to=bob.participant_id).status_code == 202
    response = room.api.http.get(f"{bob.base}/messages", params={"after": bob.after, "wait": 5}, headers=bob.headers)
    assert json.loads(response.text, parse_constant=lambda c: pytest.fail(f"{c} in a poll answer"))["messages"][0][
        "payload"
    ] == {"ok": True}


def test_a_payload_63_levels_deep_is_delivered(room):
    alice, bob = room.members
    payload: dict = {"x": 1}
    for _ in range(62):
        payload = {"x": payload}
    assert alice.send(payload, to=bob.participant_id).status_code == 202
    assert bob.wait_type("message")["payload"] == payload


def test_body_larger_than_256_kib(stack, api, room):
    count = session_documents(stack.env["MONGODB_URI"])
    big = json.dumps({"name": "x" * (260 * KIB)})
    assert_error(
        api.http.post(f"{api.base}/api/v1/sessions", data=big, headers={"Content-Type": "application/json"}), 413
    )
    alice = room.members[0]
    offer = json.dumps({"stream": PUBLISH, "sdp": "v=0\r\n" + "a=x:" + "y" * (300 * KIB)})
    assert_error(
        api.http.post(
            f"{alice.base}/offers", data=offer, headers={"Content-Type": "application/json", **alice.headers}
        ),
        413,
    )
    message = json.dumps({"payload": {"blob": "z" * (300 * KIB)}})
    assert_error(
        api.http.post(
            f"{room.url}/messages", data=message, headers={"Content-Type": "application/json", **alice.headers}
        ),
        413,
    )
    assert session_documents(stack.env["MONGODB_URI"]) == count
    room.assert_quiet()


# --- messages -------------------------------------------------------------------------------

MESSAGE_CASES = {
    "payload is a string": ({"payload": "hello"}, 422),
    "payload is a list": ({"payload": [1, 2]}, 422),
    "payload is a number": ({"payload": 5}, 422),
    "payload is null": ({"payload": None}, 422),
    "no payload": ({"to": None}, 422),
    "payload larger than 16 KiB": ({"payload": {"text": "x" * (16 * KIB)}}, 422),
    "unknown field": ({"payload": {}, "cc": "all"}, 422),
    "to is empty": ({"payload": {}, "to": ""}, 422),
    "to names an unknown participant": ({"payload": {"text": "psst"}, "to": uuid.uuid4().hex}, 404),
}


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_bad_message_is_refused_and_nobody_receives_it(room, case):
    body, code = MESSAGE_CASES[case]
    alice = room.members[0]
    before = room.snapshot()
    response = room.api.http.post(f"{room.url}/messages", json=body, headers=alice.headers)
    assert_error(response, code)
    assert room.snapshot() == before
    room.assert_quiet()


def test_payload_just_under_16_kib_is_delivered(room):
    alice, bob = room.members
    payload = {"text": "x" * (16 * KIB - 20)}
    assert len(json.dumps(payload, separators=(",", ":"))) <= 16 * KIB
    assert alice.send(payload, to=bob.participant_id).status_code == 202
    assert bob.wait_type("message")["payload"] == payload


POLL_CASES = {
    "wait above 30": {"wait": 31},
    "negative wait": {"wait": -1},
    "wait not a number": {"wait": "soon"},
    "negative after": {"after": -1},
    "after not a number": {"after": "x"},
    "limit 0": {"limit": 0},
    "limit 501": {"limit": 501},
}


@pytest.mark.parametrize("case", list(POLL_CASES))
def test_bad_poll_arguments(room, case):
    alice, bob = room.members
    assert bob.send({"text": "kept"}, to=alice.participant_id).status_code == 202
    response = room.api.http.get(f"{alice.base}/messages", params=POLL_CASES[case], headers=alice.headers)
    assert_error(response, 422)
    # The refused poll neither took nor acknowledged the pending message.
    assert alice.wait_type("message")["payload"] == {"text": "kept"}
    room.assert_quiet()


# --- unknown things, wrong methods ----------------------------------------------------------


def test_unknown_participant(stack, room):
    ghost = uuid.uuid4().hex
    token = sign_token(stack.env["SECRET_KEY"], room.sid, ghost)  # valid token, participant never existed
    base = f"{room.url}/participants/{ghost}"
    offer = {"stream": PUBLISH, "sdp": PUBLISH_SDP}
    for method, path, body in (
        ("GET", f"{base}/messages", None),
        ("POST", f"{base}/offers", offer),
        ("POST", f"{base}/candidates", {"stream": PUBLISH, "candidate": CANDIDATE}),
        ("POST", f"{base}/rejoin", None),
        ("DELETE", base, None),
    ):
        response = room.api.http.request(method, path, json=body, headers=bearer(token))
        assert_error(response, 404)
    before = room.snapshot()
    assert ghost not in {p["participant_id"] for p in before["participants"]}
    room.assert_quiet()


def test_participant_who_left_cannot_offer_or_send(room):
    alice, bob = room.members
    assert alice.leave().status_code == 202
    bob.wait_type("participantLeft", participant_id=alice.participant_id)
    assert_error(
        room.api.http.post(f"{alice.base}/offers", json={"stream": PUBLISH, "sdp": PUBLISH_SDP}, headers=alice.headers),
        409,
    )
    assert_error(alice.send({"text": "ghost"}), 409)
    assert_error(room.api.http.post(f"{alice.base}/rejoin", headers=alice.headers), 409)
    assert_error(
        room.api.http.post(
            f"{bob.base}/offers", json={"stream": alice.participant_id, "sdp": PUBLISH_SDP}, headers=bob.headers
        ),
        404,
    )
    room.assert_quiet(bob)


WRONG_METHODS = [
    ("PUT", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions"),  # GET lists sessions (API key)
    ("PATCH", "/api/v1/sessions/{sid}"),
    ("PUT", "/api/v1/sessions/{sid}/participants"),
    ("GET", "/api/v1/sessions/{sid}/participants/{pid}/offers"),
    ("DELETE", "/api/v1/sessions/{sid}/participants/{pid}/candidates"),
    ("POST", "/api/v1/sessions/{sid}/participants/{pid}/messages"),
    ("GET", "/api/v1/sessions/{sid}/messages"),
    ("GET", "/api/v1/sessions/{sid}/participants/{pid}/rejoin"),
    ("POST", "/health"),
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_wrong_method_is_405(room, method, path):
    alice = room.members[0]
    before = room.snapshot()
    url = room.api.base + path.format(sid=room.sid, pid=alice.participant_id)
    response = room.api.http.request(method, url, json={}, headers=alice.headers)
    assert_error(response, 405)
    assert response.headers.get("Allow"), response.headers
    assert room.snapshot() == before


UNKNOWN_PATHS = [
    "/api/v1/nothing",
    "/api/v2/sessions",
    "/nothing",
    "/api/v1/sessions/{sid}/participants/{pid}/x",
    "/api/v1/sessions/{sid}/.env",
    "/api/v1/sessions/../../etc/passwd",
]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_path_is_404(room, method, path):
    alice = room.members[0]
    url = room.api.base + path.format(sid=room.sid, pid=alice.participant_id)
    assert_error(room.api.http.request(method, url, json={}, headers=alice.headers), 404)
