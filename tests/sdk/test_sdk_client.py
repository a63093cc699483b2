"""SignalingClient against a scripted local HTTP server: what each call sends (method, path, query,
body, headers), how answers become dataclasses, how errors map to ApiError subclasses, and which
failures are retried (with the same Idempotency-Key) and which are not."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from signaling_sdk import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    SignalingClient,
    TransportError,
    Unauthorized,
    Unprocessable,
)

SESSION = {"session_id": "s1", "join_token": "jt", "name": "standup", "state": "open"}


def error(code: int, status: str, message: str, errors: dict | None = None) -> dict:
    return {"code": code, "status": status, "message": message, "errors": errors or {}}


# --- request shaping ---------------------------------------------------------------------------
def test_create_session_posts_the_given_fields_with_the_api_key_and_an_idempotency_key(service, client):
    service.answer(201, SESSION)
    created = client.create_session(name="standup", max_participants=4)
    assert (created.session_id, created.join_token, created.name, created.state) == ("s1", "jt", "standup", "open")
    (sent,) = service.requests
    assert (sent.method, sent.path) == ("POST", "/api/v1/sessions")
    assert sent.json == {"name": "standup", "max_participants": 4}
    assert sent.header("X-API-Key") == "k1"
    assert sent.header("Content-Type") == "application/json"
    assert sent.header("Idempotency-Key")
    assert sent.header("User-Agent").startswith("signaling-sdk-python/")


def test_omitted_fields_are_not_sent_so_the_service_defaults_apply(service, client):
    service.answer(201, SESSION)
    client.create_session()
    assert service.requests[0].json == {}


def test_every_post_gets_a_key_of_its_own_unless_the_caller_passes_one(service, client):
    for _ in range(2):
        service.answer(201, SESSION)
        client.create_session()
    service.answer(201, SESSION)
    client.create_session(idempotency_key="order-42")
    keys = [r.header("Idempotency-Key") for r in service.requests]
    assert keys[0] != keys[1] and keys[2] == "order-42"


def test_gets_and_deletes_send_no_body_and_no_idempotency_key(service, client):
    service.answer(200, {**SESSION, "participants": []})
    client.get_session("s1")
    service.answer(202, {})
    client.close_session("s1")
    for sent in service.requests:
        assert sent.body == b"" and sent.header("Idempotency-Key") is None and sent.header("X-API-Key") == "k1"
    assert [(r.method, r.path) for r in service.requests] == [
        ("GET", "/api/v1/sessions/s1"),
        ("DELETE", "/api/v1/sessions/s1"),
    ]


def test_without_an_api_key_no_key_header_is_sent(service):
    service.answer(201, SESSION)
    SignalingClient(service.url + "/").create_session()
    (sent,) = service.requests
    assert sent.header("X-API-Key") is None and sent.path == "/api/v1/sessions"


def test_an_id_is_one_path_segment_whatever_it_holds(service, client):
    service.answer(202, {})
    client.remove_participant("s/1", "../p?x")
    assert service.requests[0].path == "/api/v1/sessions/s%2F1/participants/..%2Fp%3Fx"


def test_get_session_reads_participants_with_and_without_roles(service, client):
    participants = [
        {"participant_id": "p1", "display_name": "alice", "publishing": True, "state": "joined"},
        {
            "participant_id": "p2",
            "display_name": "bob",
            "publishing": False,
            "state": "joined",
            "role": "moderator",
            "metadata": {"seat": 2},
            "added_later": 1,
        },
    ]
    service.answer(200, {"session_id": "s1", "name": "n", "state": "open", "participants": participants})
    session = client.get_session("s1")
    alice, bob = session.participants
    assert (alice.participant_id, alice.publishing, alice.role, alice.metadata) == ("p1", True, None, None)
    assert (bob.role, bob.metadata, bob.raw["added_later"]) == ("moderator", {"seat": 2}, 1)


def test_list_sessions_sends_the_query_and_reads_the_page(service, client):
    item = {"session_id": "s1", "name": "a", "state": "open", "participant_count": 2}
    service.answer(200, {"sessions": [{**item, "created_at": "2026-01-01T10:00:00.000+00:00"}], "next_cursor": "c2"})
    page = client.list_sessions(state="open", limit=10, cursor="c1")
    assert service.requests[0].path == "/api/v1/sessions?state=open&limit=10&cursor=c1"
    assert page.next_cursor == "c2"
    (summary,) = page.sessions
    assert (summary.session_id, summary.participant_count) == ("s1", 2)
    assert summary.created_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_iter_sessions_follows_next_cursor_to_the_last_page(service, client):
    def page(ids: list[str], cursor: str | None) -> dict:
        items = [
            {"session_id": i, "name": "", "state": "closed", "participant_count": 0, "created_at": "2026-01-01T10:00Z"}
            for i in ids
        ]
        return {"sessions": items, "next_cursor": cursor}

    service.answer(200, page(["s5", "s4"], "after-s4"))
    service.answer(200, page(["s3", "s2"], "after-s2"))
    service.answer(200, page(["s1"], None))
    ids = [s.session_id for s in client.iter_sessions(state="closed", page_size=2)]
    assert ids == ["s5", "s4", "s3", "s2", "s1"]
    assert [r.path for r in service.requests] == [
        "/api/v1/sessions?state=closed&limit=2",
        "/api/v1/sessions?state=closed&limit=2&cursor=after-s4",
        "/api/v1/sessions?state=closed&limit=2&cursor=after-s2",
    ]


def test_mint_token_posts_role_name_metadata_and_ttl(service, client):
    service.answer(201, {"join_token": "mt", "role": "subscriber", "expires_at": "2026-01-01T11:00:00.000Z"})
    minted = client.mint_token("s1", role="subscriber", display_name="bob", metadata={"seat": 3}, ttl_s=600)
    (sent,) = service.requests
    assert (sent.method, sent.path) == ("POST", "/api/v1/sessions/s1/tokens")
    assert sent.json == {"role": "subscriber", "display_name": "bob", "metadata": {"seat": 3}, "ttl_s": 600}
    assert (minted.join_token, minted.role) == ("mt", "subscriber")
    assert minted.expires_at == datetime(2026, 1, 1, 11, tzinfo=UTC)


def test_bandwidth_limits_go_with_the_session_and_the_minted_token(service, client):
    service.answer(201, {"session_id": "s1", "join_token": "j", "name": "", "state": "open"})
    client.create_session(max_video_send_bandwidth=800, max_video_recv_bandwidth=2000)
    service.answer(201, {"join_token": "mt", "role": "publisher", "expires_at": "2026-01-01T11:00:00.000Z"})
    client.mint_token("s1", max_video_send_bandwidth=300, min_video_send_bandwidth=100)
    created, minted = service.requests
    assert created.json == {"max_video_send_bandwidth": 800, "max_video_recv_bandwidth": 2000}
    assert minted.json == {"max_video_send_bandwidth": 300, "min_video_send_bandwidth": 100}


def test_rotate_join_token_returns_the_new_token(service, client):
    service.answer(200, {"join_token": "new"})
    assert client.rotate_join_token("s1") == "new"
    (sent,) = service.requests
    assert (sent.method, sent.path, sent.json) == ("POST", "/api/v1/sessions/s1/join-token", {})
    assert sent.header("Idempotency-Key")


def test_remove_participant_and_send_message(service, client):
    client.remove_participant("s1", "p1")
    client.send_message("s1", {"text": "hi"})
    client.send_message("s1", [1, 2], to="p2")
    shapes = [(r.method, r.path, r.body and r.json) for r in service.requests]
    assert shapes == [
        ("DELETE", "/api/v1/sessions/s1/participants/p1", b""),
        ("POST", "/api/v1/sessions/s1/messages", {"payload": {"text": "hi"}}),
        ("POST", "/api/v1/sessions/s1/messages", {"payload": [1, 2], "to": "p2"}),
    ]


RECORDING = {
    "recording_id": "r1",
    "state": "stopped",
    "participant_id": "p1",
    "name": "screen",
    "profile": "mp4",
    "uri": "file:///var/recordings/s1/r1.mp4",
    "started_at": "2026-01-01T10:00:00.000Z",
    "stopped_at": "2026-01-01T10:05:00.000Z",
    "reason": "stopped",
}


def test_recording_calls_are_shaped_as_the_contract_says(service, client):
    service.answer(201, {**RECORDING, "state": "starting", "started_at": None, "stopped_at": None, "reason": None})
    started = client.start_recording("s1", "p1", name="screen", profile="mp4")
    service.answer(200, {"recordings": [RECORDING]})
    listed = client.list_recordings("s1")
    service.answer(200, RECORDING)
    got = client.get_recording("s1", "r1")
    service.answer(202, {})
    client.stop_recording("s1", "r1")
    shapes = [(r.method, r.path, r.body and r.json) for r in service.requests]
    assert shapes == [
        ("POST", "/api/v1/sessions/s1/recordings", {"participant_id": "p1", "name": "screen", "profile": "mp4"}),
        ("GET", "/api/v1/sessions/s1/recordings", b""),
        ("GET", "/api/v1/sessions/s1/recordings/r1", b""),
        ("POST", "/api/v1/sessions/s1/recordings/r1/stop", {}),
    ]
    assert (started.state, started.started_at, started.reason) == ("starting", None, None)
    assert listed == [got]
    assert got.stopped_at == datetime(2026, 1, 1, 10, 5, tzinfo=UTC) and got.reason == "stopped"


def test_start_recording_sends_only_the_participant_when_name_and_profile_are_defaults(service, client):
    service.answer(201, {**RECORDING, "state": "starting"})
    client.start_recording("s1", "p1")
    assert service.requests[0].json == {"participant_id": "p1"}


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict), (422, Unprocessable), (418, ApiError)],
)
def test_a_non_2xx_answer_raises_its_error_with_the_documented_shape(service, client, status, kind):
    fields = {"json": {"ttl_s": ["Must be between 1 and 86400."]}} if status == 422 else {}
    service.answer(status, error(status, "Some Status", f"refused with {status}", fields))
    with pytest.raises(kind) as raised:
        client.mint_token("s1", ttl_s=90000)
    err = raised.value
    assert (err.code, err.status, err.message, err.errors) == (status, "Some Status", f"refused with {status}", fields)
    assert err.method == "POST" and err.url.endswith("/api/v1/sessions/s1/tokens")
    assert len(service.requests) == 1  # refusals are final: not retried


def test_an_answer_not_in_the_error_shape_still_raises_with_its_status(service, client):
    service.answer(502, b"<html>Bad gateway</html>")
    with pytest.raises(ApiError) as raised:
        client.get_session("s1")
    assert raised.value.code == 502 and raised.value.status == "Bad Gateway"
    assert "Bad gateway" in raised.value.message and raised.value.errors == {}


# --- retries -----------------------------------------------------------------------------------
def test_a_post_without_answer_is_retried_with_the_same_key_and_body(service, client):
    service.drop()
    service.answer(201, SESSION)
    assert client.create_session(name="a").session_id == "s1"
    first, second = service.requests
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert first.body == second.body


def test_a_503_is_retried_after_its_retry_after(service, client):
    unavailable = error(503, "Service Unavailable", "The service is temporarily unavailable; retry shortly.")
    service.answer(503, unavailable, Retry_After="0")
    service.answer(202, {})
    client.send_message("s1", {"x": 1})
    assert len(service.requests) == 2
    assert len({r.header("Idempotency-Key") for r in service.requests}) == 1


def test_a_429_is_retried(service, client):
    service.answer(429, error(429, "Too Many Requests", "Too many requests; slow down."), Retry_After="0")
    service.answer(200, {**SESSION, "participants": []})
    assert client.get_session("s1").session_id == "s1"


def test_when_retries_run_out_the_last_error_is_raised(service, client):
    for _ in range(3):
        service.answer(503, error(503, "Service Unavailable", "retry shortly"), Retry_After="0")
    with pytest.raises(ServiceUnavailable) as raised:
        client.close_session("s1")
    assert len(service.requests) == 3  # retries=2: three attempts
    assert raised.value.retry_after == 0 and raised.value.message == "retry shortly"


def test_a_retry_that_finds_its_first_attempt_still_running_waits_for_it(service, client):
    service.drop()
    service.answer(409, error(409, "Conflict", "A request with this Idempotency-Key is still being processed."))
    service.answer(201, {"join_token": "mt", "role": "publisher", "expires_at": "2026-01-01T11:00:00Z"})
    assert client.mint_token("s1").join_token == "mt"
    assert len({r.header("Idempotency-Key") for r in service.requests}) == 1 and len(service.requests) == 3


def test_an_in_progress_409_on_a_first_attempt_is_not_ours_and_raises(service, client):
    # The caller reused its own key while that request runs: that is its own concurrency to settle.
    service.answer(409, error(409, "Conflict", "A request with this Idempotency-Key is still being processed."))
    with pytest.raises(Conflict):
        client.create_session(idempotency_key="mine")
    assert len(service.requests) == 1


def test_no_answer_at_all_raises_transport_error_after_the_retries():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SignalingClient(f"http://127.0.0.1:{port}", api_key="k1", retries=1, backoff_s=0)
    with pytest.raises(TransportError):
        client.get_session("s1")


def test_an_answer_slower_than_the_timeout_raises_transport_error(service):
    service.hang()
    client = SignalingClient(service.url, api_key="k1", timeout=0.2, retries=0)
    with pytest.raises(TransportError, match="no answer"):
        client.get_session("s1")
    assert len(service.requests) == 1


def test_rate_limited_carries_retry_after(service):
    client = SignalingClient(service.url, api_key="k1", retries=0)
    service.answer(429, error(429, "Too Many Requests", "Too many requests; slow down."), Retry_After="3")
    with pytest.raises(RateLimited) as raised:
        client.create_session()
    assert raised.value.retry_after == 3.0
