"""Limits that protect the service, on a stack of their own with low limits and two web
instances: per-caller rate limits counted by each instance (429 + Retry-After, in the error
shape), concurrent polls per participant shared by the instances, the CORS allowlist, and
secrets kept out of the logs.

The body-size limit (413 in the error shape) is tested in test_rest_errors.py.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from signaling_cli import processes
from tests.conftest import read_fixture, stack_env, start_stack
from tests.support.checks import assert_error, bearer, sign_token

pytestmark = pytest.mark.integration

RATE_PER_S = 10
BURST = 20  # a moving window of 20 requests per 2 s (signaling_web.ratelimit.limit_for)
MAX_POLLS = 2
ALLOWED_ORIGIN = "https://app.example.test"
OTHER_ORIGIN = "https://evil.example.test"
API_KEY = "limits-key-" + secrets.token_urlsafe(16)
PUBLISH_SDP = read_fixture("chromium-publish.sdp")


class Limited:
    def __init__(self, stack, second_web):
        self.stack = stack
        self.urls = [stack.base_url, f"http://127.0.0.1:{second_web.port}"]
        self.second_web = second_web
        self.http = requests.Session()

    def request(self, method: str, path: str, instance: int = 0, **kwargs) -> requests.Response:
        return self.http.request(method, self.urls[instance] + path, timeout=40, **kwargs)

    def paced(self, method: str, path: str, **kwargs) -> requests.Response:
        """For setting up: waits out 429s, so a test's own setup never trips the limits."""
        for _ in range(20):
            response = self.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers["Retry-After"]))
        raise AssertionError(f"{method} {path} still refused")

    def room(self, *names: str) -> tuple[dict, list[dict]]:
        created = self.paced("POST", "/api/v1/sessions", json={"name": "limits"}, headers={"X-API-Key": API_KEY})
        assert created.status_code == 201, created.text
        session = created.json()
        members = []
        for name in names:
            joined = self.paced(
                "POST",
                f"/api/v1/sessions/{session['session_id']}/participants",
                json={"display_name": name, "join_token": session["join_token"]},
            )
            assert joined.status_code == 201, joined.text
            members.append(joined.json())
        return session, members

    def wait_recovered(self, path: str, headers: dict) -> None:
        """Until the caller's bucket has refilled completely (burst available again)."""
        response = self.paced("GET", path, headers=headers)
        assert response.status_code < 429
        time.sleep(BURST / RATE_PER_S)


@pytest.fixture(scope="module")
def limited(run_dir, rabbitmq_url, mongodb_uri, kms_url):
    env = stack_env(
        rabbitmq_url,
        mongodb_uri,
        [kms_url],
        RATE_LIMIT_PER_S=str(RATE_PER_S),
        RATE_LIMIT_BURST=str(BURST),
        MAX_POLLS_PER_PARTICIPANT=str(MAX_POLLS),
        CORS_ORIGINS=f"{ALLOWED_ORIGIN},https://second.example.test",
        SIGNALING_API_KEYS=API_KEY,
    )
    log_dir = run_dir / "logs-limits"
    running = start_stack(env, log_dir, workers=1)
    second = None
    try:
        second = processes.start_web(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-web2")
        yield Limited(running, second)
    finally:
        if second is not None:
            second.stop()
        running.stop()


def session_path(session: dict) -> str:
    return f"/api/v1/sessions/{session['session_id']}"


def burst(limited: Limited, path: str, headers: dict, count: int, instances=(0,)) -> list[requests.Response]:
    return [limited.request("GET", path, instance=instances[i % len(instances)], headers=headers) for i in range(count)]


# --- rate limits ------------------------------------------------------------------------------


def test_a_burst_over_the_limit_gets_429_with_retry_after_and_recovers(limited):
    session, (alice, bob) = limited.room("alice", "bob")
    limited.wait_recovered(session_path(session), bearer(alice["token"]))
    started = time.monotonic()
    responses = burst(limited, session_path(session), bearer(alice["token"]), BURST * 3)
    elapsed = time.monotonic() - started
    allowed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(allowed) + len(refused) == len(responses), [r.status_code for r in responses]
    assert BURST <= len(allowed) <= BURST + RATE_PER_S * elapsed + 1, (len(allowed), elapsed)
    assert refused, "a burst of three times the bucket was never refused"
    for response in refused:
        body = assert_error(response, 429)
        assert body["status"] == "Too Many Requests"
        retry_after = int(response.headers["Retry-After"])
        assert 1 <= retry_after <= BURST / RATE_PER_S + 1
    # Another participant's token is a bucket of its own.
    assert limited.request("GET", session_path(session), headers=bearer(bob["token"])).status_code == 200
    # After Retry-After, the caller is served again.
    time.sleep(int(refused[-1].headers["Retry-After"]))
    assert limited.request("GET", session_path(session), headers=bearer(alice["token"])).status_code == 200


def test_each_web_instance_counts_the_limit_on_its_own(limited):
    session, (carol,) = limited.room("carol")
    limited.wait_recovered(session_path(session), bearer(carol["token"]))
    started = time.monotonic()
    responses = burst(limited, session_path(session), bearer(carol["token"]), BURST * 3, instances=(0, 1))
    elapsed = time.monotonic() - started
    # Counted in each process's memory, never shared (docs/scaling.md): each instance allows the
    # caller its own burst, and refuses once its own window is full.
    for instance in (0, 1):
        allowed = sum(r.status_code == 200 for r in responses[instance::2])
        assert BURST <= allowed <= BURST + RATE_PER_S * elapsed + 1, (instance, allowed, elapsed)
    refused_by = {i % 2 for i, r in enumerate(responses) if r.status_code == 429}
    assert refused_by == {0, 1}, "both instances refuse once their own window is full"


def test_anonymous_routes_are_limited_by_client_address(limited):
    session, (dave,) = limited.room("dave")
    join = f"{session_path(session)}/participants"
    time.sleep(BURST / RATE_PER_S)
    responses = [
        limited.request("POST", join, json={"display_name": "x", "join_token": "wrong"}) for _ in range(BURST * 3)
    ]
    codes = [r.status_code for r in responses]
    assert set(codes) == {403, 429}, codes
    assert_error(next(r for r in responses if r.status_code == 429), 429)
    # A participant's token is not the address's bucket.
    assert limited.request("GET", session_path(session), headers=bearer(dave["token"])).status_code == 200
    time.sleep(BURST / RATE_PER_S)


def test_invalid_tokens_count_against_the_address_not_a_fresh_bucket_each(limited):
    session, (erin,) = limited.room("erin")
    time.sleep(BURST / RATE_PER_S)
    codes = [
        limited.request("GET", session_path(session), headers=bearer(f"forged.{secrets.token_urlsafe(12)}")).status_code
        for _ in range(BURST * 3)
    ]
    assert 401 in codes and 429 in codes, codes
    time.sleep(BURST / RATE_PER_S)


def test_a_long_poll_counts_once(limited):
    session, (frank,) = limited.room("frank")
    path = f"{session_path(session)}/participants/{frank['participant_id']}/messages"
    last_seq = drain(limited, path, frank["token"])
    limited.wait_recovered(session_path(session), bearer(frank["token"]))
    # Polls that wait 2 s each are one request each, however long they wait: the burst is intact after them.
    for _ in range(2):
        started = time.monotonic()
        response = limited.request("GET", path, params={"wait": 2, "after": last_seq}, headers=bearer(frank["token"]))
        assert response.status_code == 200 and time.monotonic() - started >= 1.9, response.text
    statuses = [r.status_code for r in burst(limited, session_path(session), bearer(frank["token"]), BURST)]
    assert statuses == [200] * BURST, statuses


# --- concurrent polls -------------------------------------------------------------------------


def drain(limited: Limited, path: str, token: str) -> int:
    """Takes every message waiting for the participant (join announcements); the last seq."""
    after = 0
    while True:
        response = limited.paced("GET", path, params={"wait": 1, "after": after}, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["messages"]:
            return after
        after = body["last_seq"]


def test_a_third_concurrent_poll_of_one_participant_is_refused_at_once(limited):
    session, (gina, hank) = limited.room("gina", "hank")
    path = f"{session_path(session)}/participants/{gina['participant_id']}/messages"
    last_seq = drain(limited, path, gina["token"])
    params = {"wait": 4, "after": last_seq}  # nothing more will arrive: each poll holds its full wait
    started = threading.Event()

    def hold(instance: int) -> int:
        started.set()
        return limited.request("GET", path, instance=instance, params=params, headers=bearer(gina["token"])).status_code

    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(hold, 0), pool.submit(hold, 1)]  # one on each web instance
        started.wait()
        time.sleep(1.0)
        t0 = time.monotonic()
        third = requests.get(limited.urls[0] + path, params=params, headers=bearer(gina["token"]), timeout=40)
        took = time.monotonic() - t0
        body = assert_error(third, 429)
        assert took < 1.0, f"the refusal took {took:.2f} s"
        assert "polls" in body["message"] and int(third.headers["Retry-After"]) >= 1
        # Another participant polls freely meanwhile.
        other = limited.request(
            "GET",
            f"{session_path(session)}/participants/{hank['participant_id']}/messages",
            params={"wait": 0},
            headers=bearer(hank["token"]),
        )
        assert other.status_code == 200, other.text
        assert [f.result() for f in held] == [200, 200]
    # The slots are free again once those polls have answered.
    again = limited.request("GET", path, params={"wait": 0}, headers=bearer(gina["token"]))
    assert again.status_code == 200, again.text


# --- CORS -------------------------------------------------------------------------------------


def test_cors_echoes_only_allowed_origins(limited):
    session, (ivan,) = limited.room("ivan")
    url = session_path(session)
    allowed = limited.paced("GET", url, headers={"Origin": ALLOWED_ORIGIN, **bearer(ivan["token"])})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Origin" in allowed.headers.get("Vary", "")
    assert "Retry-After" in allowed.headers.get("Access-Control-Expose-Headers", "")
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    # Errors carry it too, so the page can read the error body.
    refused = limited.paced("GET", url, headers={"Origin": ALLOWED_ORIGIN})
    assert_error(refused, 401)
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    for origin in (OTHER_ORIGIN, "null", ALLOWED_ORIGIN + ".evil.test", ALLOWED_ORIGIN.upper()):
        other = limited.paced("GET", url, headers={"Origin": origin, **bearer(ivan["token"])})
        assert other.status_code == 200
        assert not [h for h in other.headers if h.lower().startswith("access-control-")], (origin, other.headers)


def test_cors_preflight(limited):
    session, (judy,) = limited.room("judy")
    offers = f"{session_path(session)}/participants/{judy['participant_id']}/offers"
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    preflight = limited.request("OPTIONS", offers, headers={"Origin": ALLOWED_ORIGIN, **asks})
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed_headers = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-api-key"} <= allowed_headers
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    # The session route allows what it serves (GET, DELETE).
    on_session = limited.request(
        "OPTIONS", session_path(session), headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "DELETE"}
    )
    assert {"GET", "DELETE"} <= {m.strip() for m in on_session.headers["Access-Control-Allow-Methods"].split(",")}
    refused = limited.request("OPTIONS", offers, headers={"Origin": OTHER_ORIGIN, **asks})
    assert not [h for h in refused.headers if h.lower().startswith("access-control-")], refused.headers
    # The real request after the preflight works, on the other instance as well.
    response = limited.paced(
        "POST",
        offers,
        headers={"Origin": ALLOWED_ORIGIN, **bearer(judy["token"])},
        json={"stream": "publish", "sdp": PUBLISH_SDP},
    )
    assert response.status_code == 202 and response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


# --- secrets never logged ---------------------------------------------------------------------


def test_secrets_never_reach_the_logs(limited):
    env = limited.stack.env
    session, (kate, leo) = limited.room("kate", "leo")
    sid = session["session_id"]
    kate_h = bearer(kate["token"])
    expired = sign_token(env["SECRET_KEY"], sid, kate["participant_id"], age_s=10 * 24 * 3600)
    base = session_path(session)
    kate_base = f"{base}/participants/{kate['participant_id']}"
    traffic = [
        ("POST", f"{kate_base}/offers", {"json": {"stream": "publish", "sdp": PUBLISH_SDP}, "headers": kate_h}),
        (
            "POST",
            f"{kate_base}/offers",
            {"json": {"stream": "publish", "sdp": PUBLISH_SDP}, "headers": {**kate_h, "Idempotency-Key": "k-1"}},
        ),
        ("POST", f"{base}/messages", {"json": {"payload": {"t": 1}}, "headers": kate_h}),
        ("GET", f"{kate_base}/messages", {"params": {"wait": 1}, "headers": kate_h}),
        ("GET", base, {"headers": {"X-API-Key": API_KEY}}),
        ("GET", base, {"headers": bearer(expired)}),
        ("GET", base, {"headers": {"X-API-Key": API_KEY + "x"}}),
        ("GET", f"{kate_base}/messages", {"headers": bearer(leo["token"])}),
        ("POST", f"{base}/participants", {"json": {"display_name": "x", "join_token": session["join_token"] + "x"}}),
        ("POST", f"{base}/participants", {"data": "{not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", f"{kate_base}/rejoin", {"headers": kate_h}),
        ("DELETE", f"{base}/participants/{leo['participant_id']}", {"headers": bearer(leo["token"])}),
        ("DELETE", base, {"headers": {"X-API-Key": API_KEY}}),
    ]
    for method, path, kwargs in traffic:
        response = limited.paced(method, path, **kwargs)
        assert response.status_code < 500, (method, path, response.text)
    burst(limited, base, kate_h, BURST * 2)  # 429s too
    time.sleep(2.0)  # the workers finish the tasks (offer, leave, close) and log them
    secrets_sent = {
        "participant token": kate["token"],
        "other participant token": leo["token"],
        "expired token": expired,
        "join token": session["join_token"],
        "API key": API_KEY,
        "SECRET_KEY": env["SECRET_KEY"],
    }
    logs = {
        proc.name: proc.log_path.read_text(errors="replace")
        for proc in [limited.stack.web, limited.second_web, *limited.stack.workers]
    }
    assert all(logs.values()), "every process wrote a log"
    assert any(sid in text for text in logs.values()), "the traffic was logged"
    for name, value in secrets_sent.items():
        for process, text in logs.items():
            assert value not in text, f"the {name} is in the log of {process}"
            signature = value.rsplit(".", 1)[-1]
            if len(signature) >= 16:
                assert signature not in text, f"the signature of the {name} is in the log of {process}"
