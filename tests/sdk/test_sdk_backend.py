"""The SDK against the real service (keyed_stack: web, worker, emulator, broker, database, with API
keys): what a backend does with it, and what frontends (tests.support.api) then see.

The tests under "awaiting ..." exercise routes that issue 14's other branches add (i14-roles:
minted tokens, join-token rotation, removal with the API key; i14-listing: GET /sessions, server
messages). They follow DESIGN.md's contract and fail until those branches are merged.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from signaling_sdk import Conflict, NotFound, SignalingClient, Unauthorized, Unprocessable
from tests.support.api import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def sdk(keyed_stack) -> SignalingClient:
    return SignalingClient(keyed_stack.base_url, api_key="k1", timeout=10)


@pytest.fixture
def frontend(keyed_stack) -> Api:
    """What a browser does: join with a join token, poll, send (no API key)."""
    return keyed_stack.api()


def join(frontend: Api, session_id: str, join_token: str, display_name: str = "alice", **extra):
    return frontend.http.post(
        f"{frontend.base}/api/v1/sessions/{session_id}/participants",
        json={"display_name": display_name, "join_token": join_token, **extra},
    )


# --- on main today ------------------------------------------------------------------------------
def test_create_read_and_close_a_session(sdk, frontend):
    created = sdk.create_session(name="standup", max_participants=3)
    assert created.state == "open" and created.name == "standup" and created.join_token
    alice = frontend.join({"session_id": created.session_id, "join_token": created.join_token}, "alice")

    session = sdk.get_session(created.session_id)
    assert (session.session_id, session.name, session.state) == (created.session_id, "standup", "open")
    assert [(p.participant_id, p.display_name) for p in session.participants] == [(alice.participant_id, "alice")]

    sdk.close_session(created.session_id)
    alice.wait_type("sessionClosed")
    assert sdk.get_session(created.session_id).state == "closed"
    sdk.close_session(created.session_id)  # closing again is no error


def test_refusals_raise_typed_errors_in_the_documented_shape(sdk, keyed_stack):
    with pytest.raises(NotFound) as missing:
        sdk.get_session("no-such-session")
    assert (missing.value.code, missing.value.status) == (404, "Not Found") and missing.value.message
    assert missing.value.errors == {}

    with pytest.raises(Unprocessable) as invalid:
        sdk.create_session(max_participants=0)
    assert invalid.value.code == 422 and "max_participants" in str(invalid.value.errors)

    with pytest.raises(Unauthorized) as unauthorized:
        SignalingClient(keyed_stack.base_url, api_key="not-a-key").create_session()
    assert unauthorized.value.code == 401


def test_the_same_idempotency_key_creates_one_session(sdk):
    key = f"create-{secrets.token_hex(4)}"
    first = sdk.create_session(name="once", idempotency_key=key)
    again = sdk.create_session(name="once", idempotency_key=key)
    assert again == first
    with pytest.raises(Unprocessable, match="different body"):
        sdk.create_session(name="other", idempotency_key=key)


# --- awaiting i14-roles -------------------------------------------------------------------------
def test_a_minted_token_joins_once_with_its_role_name_and_metadata(sdk, frontend):
    session = sdk.create_session()
    before = datetime.now(UTC)
    minted = sdk.mint_token(session.session_id, role="subscriber", display_name="bob", metadata={"seat": 3}, ttl_s=600)
    after = datetime.now(UTC)
    assert minted.role == "subscriber"
    # Minted between `before` and `after` (on this machine's clock), for 600 s; milliseconds in the answer.
    assert before + timedelta(seconds=599) <= minted.expires_at <= after + timedelta(seconds=601)

    joined = join(frontend, session.session_id, minted.join_token, display_name="mallory")
    assert joined.status_code == 201, joined.text
    assert joined.json()["role"] == "subscriber"
    (bob,) = sdk.get_session(session.session_id).participants
    assert (bob.display_name, bob.role, bob.metadata) == ("bob", "subscriber", {"seat": 3})  # the token's win

    again = join(frontend, session.session_id, minted.join_token, display_name="bob")
    assert again.status_code == 409, again.text


def test_minting_refuses_what_the_contract_refuses(sdk):
    session = sdk.create_session()
    with pytest.raises(Unprocessable) as too_long:
        sdk.mint_token(session.session_id, ttl_s=86401)
    assert "ttl_s" in str(too_long.value.errors)
    with pytest.raises(Unprocessable) as bad_role:
        sdk.mint_token(session.session_id, role="king")  # type: ignore[arg-type]
    assert "role" in str(bad_role.value.errors)
    with pytest.raises(NotFound):
        sdk.mint_token("no-such-session")


def test_rotating_the_join_token_refuses_the_old_one(sdk, frontend):
    session = sdk.create_session()
    new_token = sdk.rotate_join_token(session.session_id)
    assert new_token and new_token != session.join_token
    refused = join(frontend, session.session_id, session.join_token)
    assert refused.status_code == 403, refused.text
    assert join(frontend, session.session_id, new_token).status_code == 201


def test_removing_a_participant_tells_everyone_and_ends_its_token(sdk, frontend):
    session = sdk.create_session()
    ref = {"session_id": session.session_id, "join_token": session.join_token}
    alice, bob = frontend.join(ref, "alice"), frontend.join(ref, "bob")
    sdk.remove_participant(session.session_id, alice.participant_id)
    bob.wait_type("participantLeft", participant_id=alice.participant_id, reason="removed")
    assert [p.participant_id for p in sdk.get_session(session.session_id).participants] == [bob.participant_id]
    assert alice.send({"still": "here?"}).status_code == 409
    with pytest.raises(NotFound):
        sdk.remove_participant(session.session_id, "no-such-participant")


# --- awaiting i14-listing -----------------------------------------------------------------------
def test_listing_pages_newest_first_and_filters_by_state(sdk, frontend):
    tag = secrets.token_hex(4)
    made = [sdk.create_session(name=f"{tag}-{i}") for i in range(3)]
    frontend.join({"session_id": made[2].session_id, "join_token": made[2].join_token}, "alice")
    sdk.close_session(made[0].session_id)

    ours = {s.session_id for s in made}
    found = []
    for summary in sdk.iter_sessions(page_size=1):  # one per page: the iterator follows next_cursor
        if summary.session_id in ours:
            found.append(summary)
        if len(found) == len(ours):
            break
    assert [s.session_id for s in found] == [s.session_id for s in reversed(made)]
    assert [s.participant_count for s in found] == [1, 0, 0]
    assert all(s.created_at.tzinfo is not None for s in found)

    first = sdk.list_sessions(limit=2)
    assert len(first.sessions) == 2 and first.next_cursor
    second = sdk.list_sessions(limit=2, cursor=first.next_cursor)
    assert not {s.session_id for s in first.sessions} & {s.session_id for s in second.sessions}

    closed = {s.session_id for s in sdk.iter_sessions(state="closed", page_size=100)}
    assert made[0].session_id in closed and not {made[1].session_id, made[2].session_id} & closed
    with pytest.raises(Unprocessable):
        sdk.list_sessions(cursor="not a cursor")


def test_server_messages_reach_everyone_or_one_participant_from_server(sdk, frontend):
    session = sdk.create_session()
    ref = {"session_id": session.session_id, "join_token": session.join_token}
    alice, bob = frontend.join(ref, "alice"), frontend.join(ref, "bob")

    sdk.send_message(session.session_id, {"notice": "recording soon"})
    for member in (alice, bob):
        got = member.wait_type("message", payload={"notice": "recording soon"})
        assert got["from"] == "server"

    sdk.send_message(session.session_id, {"only": "bob"}, to=bob.participant_id)
    sdk.send_message(session.session_id, {"after": "direct"})
    assert bob.wait_type("message", payload={"only": "bob"})["from"] == "server"
    alice.wait_type("message", payload={"after": "direct"})
    assert {"only": "bob"} not in [m.get("payload") for m in alice.inbox]  # queued before the broadcast

    with pytest.raises(NotFound):
        sdk.send_message(session.session_id, {"x": 1}, to="no-such-participant")
    sdk.close_session(session.session_id)
    with pytest.raises(Conflict):
        sdk.send_message(session.session_id, {"x": 1})
