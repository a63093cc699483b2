"""GET /sessions: the application backend's listing (API key), newest first, a page at a time, on the
keyed stack. The stack's database holds the sessions of other tests too, so each test follows its own
sessions through the whole listing."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from tests.support.checks import Room, assert_error

pytestmark = pytest.mark.integration

FIELDS = {"session_id", "name", "state", "participant_count", "created_at"}


def listing(api, **params) -> dict:
    response = api.http.get(f"{api.base}/api/v1/sessions", params=params, headers=api.key_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"sessions", "next_cursor"}
    for entry in body["sessions"]:
        assert set(entry) == FIELDS, entry
    return body


def walk(api, **params) -> list[list[dict]]:
    """Every page, following next_cursor until it is null."""
    pages = []
    cursor = None
    while True:
        body = listing(api, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(body["sessions"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def entry_of(api, session_id: str, **params) -> dict | None:
    found = [e for page in walk(api, limit=100, **params) for e in page if e["session_id"] == session_id]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_a_new_session_is_listed_first_with_its_fields(keyed):
    before = datetime.now(UTC)
    session = keyed.create_session(name="listed", max_participants=3)
    first = listing(keyed, limit=1)["sessions"][0]
    assert first["session_id"] == session["session_id"]
    assert (first["name"], first["state"], first["participant_count"]) == ("listed", "open", 0)
    created_at = datetime.fromisoformat(first["created_at"])
    assert created_at.tzinfo is not None and created_at.utcoffset().total_seconds() == 0
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= created_at <= datetime.now(UTC)


def test_participant_count_follows_joins_and_leaves_and_is_zero_once_closed(keyed):
    room = Room.open(keyed, ("alice", "bob", "carol"))
    assert entry_of(keyed, room.sid)["participant_count"] == 3
    assert room.members[1].leave().status_code == 202  # the place is released before the answer
    assert entry_of(keyed, room.sid)["participant_count"] == 2
    assert keyed.http.delete(room.url, headers=keyed.key_headers).status_code == 202
    closed = entry_of(keyed, room.sid)
    assert (closed["state"], closed["participant_count"]) == ("closed", 0)


def test_the_state_filter(keyed):
    open_one = keyed.create_session(name="stays open")["session_id"]
    closed_one = keyed.create_session(name="closes")["session_id"]
    assert keyed.http.delete(f"{keyed.base}/api/v1/sessions/{closed_one}", headers=keyed.key_headers).status_code == 202
    opened = [e for page in walk(keyed, state="open", limit=100) for e in page]
    closed = [e for page in walk(keyed, state="closed", limit=100) for e in page]
    assert {e["state"] for e in opened} == {"open"} and {e["state"] for e in closed} == {"closed"}
    assert open_one in {e["session_id"] for e in opened} and open_one not in {e["session_id"] for e in closed}
    assert closed_one in {e["session_id"] for e in closed} and closed_one not in {e["session_id"] for e in opened}
    assert all(e["state"] == "media_lost" for page in walk(keyed, state="media_lost") for e in page)


def test_pages_never_repeat_or_skip_a_session_while_others_are_created(keyed):
    mine = [keyed.create_session(name=f"page {i}")["session_id"] for i in range(7)]
    seen: list[str] = []
    created_while_paging: list[str] = []
    cursor = None
    while True:
        body = listing(keyed, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(body["sessions"]) <= 2
        seen += [e["session_id"] for e in body["sessions"]]
        # Each page, a new session: it sorts before every cursor handed out, so no later page shows it.
        created_while_paging.append(keyed.create_session(name="meanwhile")["session_id"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a session came twice"
    assert [s for s in seen if s in mine] == list(reversed(mine)), "newest first, none skipped"
    assert not set(created_while_paging) & set(seen)
    # Every page is in the order of creation, newest first, across pages too.
    stamps = [e["created_at"] for page in walk(keyed, limit=3) for e in page]
    assert stamps == sorted(stamps, reverse=True)


def test_the_last_page_has_no_cursor(keyed):
    body = listing(keyed, limit=100)
    while body["next_cursor"]:
        body = listing(keyed, limit=100, cursor=body["next_cursor"])
    assert len(body["sessions"]) <= 100 and body["next_cursor"] is None


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD = {
    "unknown state": ({"state": "ringing"}, "state"),
    "state in another case": ({"state": "OPEN"}, "state"),
    "limit 0": ({"limit": 0}, "limit"),
    "limit over 100": ({"limit": 101}, "limit"),
    "limit not a number": ({"limit": "ten"}, "limit"),
    "cursor not base64": ({"cursor": "%%%"}, "cursor"),
    "cursor of random bytes": ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()}, "cursor"),
    "cursor of something else": ({"cursor": cursor_of('{"offset": 40}')}, "cursor"),
    "cursor with a short time": ({"cursor": cursor_of(f"17000.{uuid.uuid4().hex}")}, "cursor"),
    "cursor too long": ({"cursor": "A" * 4000}, "cursor"),
    "empty cursor": ({"cursor": ""}, "cursor"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_query_arguments_are_422_naming_the_argument(keyed, case):
    params, field = BAD[case]
    response = keyed.http.get(f"{keyed.base}/api/v1/sessions", params=params, headers=keyed.key_headers)
    body = assert_error(response, 422)
    assert field in body["errors"]["query"], body


def test_a_well_formed_cursor_of_no_session_still_pages_from_its_place(keyed):
    # The cursor is a position, not a reference: one older than every session gives an empty last page.
    body = listing(keyed, cursor=cursor_of(f"{0:013d}.{uuid.uuid4().hex}"))
    assert body == {"sessions": [], "next_cursor": None}


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "k3"}, {"X-API-Key": ""}],
    ids=["no key", "wrong key", "empty key"],
)
def test_listing_needs_the_api_key(keyed, headers):
    assert_error(keyed.http.get(f"{keyed.base}/api/v1/sessions", headers=headers), 401)


def test_a_participant_token_does_not_list_sessions(keyed):
    member = Room.open(keyed, ("eve",)).members[0]
    assert_error(keyed.http.get(f"{keyed.base}/api/v1/sessions", headers=member.headers), 401)


def test_an_open_deployment_lists_for_nobody(api):
    # Without SIGNALING_API_KEYS nobody holds a key: the listing is closed, as closing sessions is.
    assert_error(api.http.get(f"{api.base}/api/v1/sessions"), 401)
