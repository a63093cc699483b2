"""What the web tier's hot requests cost, counted in-process (Flask test client, nx-27017,
RabbitMQ): POST offers and POST candidates of a joined participant touch MongoDB zero times in
the common case (signaling_web.participant_cache, signaling_web.ratelimit); a participant this
process has not seen lately costs one read, an Idempotency-Key its record's writes. Leaves and
closes this process handled are refused at once (409), whatever the cache held; and the rate
limit refuses per caller, with Retry-After, without touching the database."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from pymongo import monitoring

from settings import Settings
from signaling_web import create_app
from tests.conftest import read_fixture
from tests.support.checks import assert_error_body

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
KEY = {"X-API-Key": "cost-key"}
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host", "sdpMid": "0", "sdpMLineIndex": 0}


class CommandCounter(monitoring.CommandListener):
    """Counts the commands sent to one database (this module's own)."""

    def __init__(self) -> None:
        self.database = ""
        self.commands: list[str] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            with self._lock:
                self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[str]:
        with self._lock:
            taken, self.commands = self.commands, []
        return taken


# Registered before the app's first client is made: pymongo listeners apply to clients made after.
COUNTER = CommandCounter()
monitoring.register(COUNTER)


@dataclass
class Web:
    client: Any
    settings: Settings

    def join(self, session: dict[str, Any], name: str) -> dict[str, Any]:
        joined = self.client.post(
            f"/api/v1/sessions/{session['session_id']}/participants",
            json={"display_name": name, "join_token": session["join_token"]},
        )
        assert joined.status_code == 201, joined.get_json()
        return dict(joined.get_json())

    def session(self) -> dict[str, Any]:
        created = self.client.post("/api/v1/sessions", json={"name": "cost"}, headers=KEY)
        assert created.status_code == 201, created.get_json()
        return dict(created.get_json())


def web_settings(rabbitmq_url: str, mongodb_uri: str, **overrides: Any) -> Settings:
    database = f"signaling_cost_{secrets.token_hex(3)}"
    return Settings(
        rabbitmq_url=rabbitmq_url,
        mongodb_uri=f"{mongodb_uri.rsplit('/', 1)[0]}/{database}",
        name_prefix=f"t{secrets.token_hex(3)}",
        secret_key=secrets.token_urlsafe(16),
        shard_queue_type="classic",
        shards=2,
        api_keys=("cost-key",),
        **overrides,
    )


@pytest.fixture(scope="module")
def web(rabbitmq_url: str, mongodb_uri: str) -> Iterator[Web]:
    settings = web_settings(rabbitmq_url, mongodb_uri)
    COUNTER.database = settings.mongodb_uri.rsplit("/", 1)[1]
    yield Web(create_app(settings).test_client(), settings)


def another_process(web: Web, **overrides: Any) -> Web:
    """A second app on the same database and broker: what another web process is to this one."""
    settings = replace(web.settings, **overrides)
    return Web(create_app(settings).test_client(), settings)


def assert_error(response: Any, code: int) -> dict[str, Any]:
    """As tests.support.checks.assert_error, for the Flask test client's responses."""
    assert response.status_code == code, response.get_data(as_text=True)
    return assert_error_body(code, response.content_type, response.get_data(as_text=True), response.get_json)


def offer(web: Web, session: dict[str, Any], member: dict[str, Any], **headers: str) -> Any:
    return web.client.post(
        f"/api/v1/sessions/{session['session_id']}/participants/{member['participant_id']}/offers",
        json={"stream": "publish", "sdp": PUBLISH_SDP},
        headers={"Authorization": f"Bearer {member['token']}", **headers},
    )


def candidates(web: Web, session: dict[str, Any], member: dict[str, Any], stream: str = "publish") -> Any:
    return web.client.post(
        f"/api/v1/sessions/{session['session_id']}/participants/{member['participant_id']}/candidates",
        json={"stream": stream, "candidates": [CANDIDATE, CANDIDATE]},
        headers={"Authorization": f"Bearer {member['token']}"},
    )


def test_offers_and_candidates_cost_no_database_operation(web: Web) -> None:
    session = web.session()
    alice, bob = web.join(session, "alice"), web.join(session, "bob")
    COUNTER.take()
    for _ in range(3):
        assert offer(web, session, alice).status_code == 202
        assert candidates(web, session, alice).status_code == 202
        assert candidates(web, session, bob, stream=alice["participant_id"]).status_code == 202
    assert COUNTER.take() == []


def test_a_participant_not_seen_lately_costs_one_read_per_check(web: Web) -> None:
    session = web.session()
    alice, bob = web.join(session, "alice"), web.join(session, "bob")
    other = another_process(web)
    COUNTER.take()
    assert offer(other, session, alice).status_code == 202
    assert COUNTER.take() == ["find"]  # the caller, then trusted for PARTICIPANT_CACHE_S
    assert candidates(other, session, bob, stream=alice["participant_id"]).status_code == 202
    assert COUNTER.take() == ["find"]  # bob; alice is known already
    assert offer(other, session, alice).status_code == 202
    assert candidates(other, session, bob, stream=alice["participant_id"]).status_code == 202
    assert COUNTER.take() == []
    uncached = another_process(web, participant_cache_s=0.0)
    for _ in range(2):
        assert offer(uncached, session, alice).status_code == 202
    assert COUNTER.take() == ["find", "find"]


def test_leaves_and_closes_this_process_handled_are_refused_at_once(web: Web) -> None:
    session = web.session()
    alice, bob = web.join(session, "alice"), web.join(session, "bob")
    assert offer(web, session, alice).status_code == 202
    assert candidates(web, session, bob, stream=alice["participant_id"]).status_code == 202  # both cached
    left = web.client.delete(
        f"/api/v1/sessions/{session['session_id']}/participants/{alice['participant_id']}",
        headers={"Authorization": f"Bearer {alice['token']}"},
    )
    assert left.status_code == 202
    assert_error(offer(web, session, alice), 409)
    assert_error(candidates(web, session, alice), 409)
    assert_error(candidates(web, session, bob, stream=alice["participant_id"]), 404)
    # Another process that does not cache (PARTICIPANT_CACHE_S=0) knows at once too.
    assert_error(offer(another_process(web, participant_cache_s=0.0), session, alice), 409)

    closing = web.session()
    carol = web.join(closing, "carol")
    assert offer(web, closing, carol).status_code == 202
    assert web.client.delete(f"/api/v1/sessions/{closing['session_id']}", headers=KEY).status_code == 202
    assert_error(offer(web, closing, carol), 409)


def test_an_idempotency_key_costs_its_record_and_nothing_else(web: Web) -> None:
    session = web.session()
    alice = web.join(session, "alice")
    assert offer(web, session, alice, **{"Idempotency-Key": "warm-up"}).status_code == 202  # indexes
    COUNTER.take()
    first = offer(web, session, alice, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202
    assert COUNTER.take() == ["insert", "update"]  # claim the key, store the sealed answer
    again = offer(web, session, alice, **{"Idempotency-Key": "k-1"})
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert COUNTER.take() == ["insert", "find"]  # the claim finds the first answer


def test_the_rate_limit_refuses_each_caller_on_its_own_without_the_database(web: Web) -> None:
    limited = another_process(web, rate_limit_per_s=0.1, rate_limit_burst=3)  # 3 per 30 s: no test is that slow
    session = limited.session()  # the API key's first request
    alice, bob = limited.join(session, "alice"), limited.join(session, "bob")  # the address's two
    COUNTER.take()
    statuses = [offer(limited, session, alice).status_code for _ in range(5)]
    assert statuses == [202, 202, 202, 429, 429], statuses
    refusal = offer(limited, session, alice)
    body = assert_error(refusal, 429)
    assert body["status"] == "Too Many Requests" and body["message"] == "Too many requests; slow down."
    assert 1 <= int(refusal.headers["Retry-After"]) <= 31
    assert COUNTER.take() == []  # three offers of a participant this process saw join: no read either
    # Each caller has its own window: another participant's token, the API key, the address.
    assert offer(limited, session, bob).status_code == 202
    assert limited.client.get(f"/api/v1/sessions/{session['session_id']}", headers=KEY).status_code == 200
    forged = {"Authorization": "Bearer forged.token"}
    path = f"/api/v1/sessions/{session['session_id']}"
    # The address made two joins: one more request, then its window is full, forged tokens included.
    assert limited.client.get(path, headers=forged).status_code == 401
    assert_error(limited.client.get(path, headers=forged), 429)
    assert_error(limited.client.get(path), 429)
    # Outside the API nothing is counted.
    assert limited.client.get("/health").status_code == 200


def test_a_join_costs_six_operations_and_one_more_with_a_minted_token(web: Web) -> None:
    """A shared-token join costs what it did before roles (the session read, the place's read and
    update, the participant insert, the closed check, the participant list; the closed check is the
    write that settles the place's admission entry since issue 16); a minted token adds
    the one conditional update that consumes it. A subscriber's offer on "publish" is refused from
    its token, without a read."""
    session = web.session()
    web.join(session, "warm")  # indexes made, collections known
    COUNTER.take()
    web.join(session, "alice")
    shared = sorted(COUNTER.take())
    minted = web.client.post(
        f"/api/v1/sessions/{session['session_id']}/tokens",
        json={"role": "subscriber", "display_name": "sub"},
        headers=KEY,
    )
    assert minted.status_code == 201, minted.get_json()
    COUNTER.take()
    joined = web.client.post(
        f"/api/v1/sessions/{session['session_id']}/participants", json={"join_token": minted.get_json()["join_token"]}
    )
    assert joined.status_code == 201, joined.get_json()
    with_minted = sorted(COUNTER.take())
    assert shared == ["find", "find", "find", "findAndModify", "insert", "update"]
    assert with_minted == sorted([*shared, "findAndModify"])
    subscriber = joined.get_json()
    assert_error(offer(web, session, subscriber), 403)
    assert_error(candidates(web, session, subscriber), 403)
    assert COUNTER.take() == []


def test_a_listing_page_costs_one_query(web: Web) -> None:
    for _ in range(3):
        web.session()
    COUNTER.take()
    first = web.client.get("/api/v1/sessions", query_string={"limit": 2}, headers=KEY)
    assert first.status_code == 200 and len(first.get_json()["sessions"]) == 2
    assert COUNTER.take() == ["find"]  # one indexed find of limit + 1 (the +1 says whether a page follows)
    cursor = first.get_json()["next_cursor"]
    query = {"limit": 2, "state": "open", "cursor": cursor}
    after = web.client.get("/api/v1/sessions", query_string=query, headers=KEY)
    assert after.status_code == 200
    assert COUNTER.take() == ["find"]
    assert_error(web.client.get("/api/v1/sessions", query_string={"cursor": "nonsense"}, headers=KEY), 422)
    assert COUNTER.take() == []  # refused before any query


def test_ice_servers_and_turn_credentials_cost_a_join_and_a_rejoin_nothing(web: Web) -> None:
    turned = another_process(
        web, ice_servers="stun:stun.example.org:3478", turn_urls=("turn:turn.example.org",), turn_secret="s"
    )
    costs = {}
    for name, process in (("plain", web), ("turn", turned)):
        session = process.session()

        def rejoin(member: dict[str, Any], process: Web = process, session: dict[str, Any] = session) -> None:
            path = f"/api/v1/sessions/{session['session_id']}/participants/{member['participant_id']}/rejoin"
            answer = process.client.post(path, headers={"Authorization": f"Bearer {member['token']}"})
            assert answer.status_code == 202 and len(answer.get_json()["ice_servers"]) == len(member["ice_servers"])

        rejoin(process.join(session, "warm-up"))  # the first use of a collection makes its indexes
        COUNTER.take()
        joined = process.join(session, "alice")
        join_ops = COUNTER.take()
        rejoin(joined)
        costs[name] = (sorted(join_ops), sorted(COUNTER.take()), len(joined["ice_servers"]))
    assert costs["plain"][:2] == costs["turn"][:2], costs
    assert (costs["plain"][2], costs["turn"][2]) == (0, 2)
