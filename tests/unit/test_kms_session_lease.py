"""A worker's own KMS sessions are a lease: not renewed for GIVE_UP_S, they are no longer used.

The database is faked here (the real run, a worker cut off from MongoDB by a network partition,
is tests/faults/test_mongo_partition.py); what is tested is the rule: a session whose renewal
lapsed leaves the client pool (later requests get a new client, a new KMS session), its client
only relays, it is never registered again, and it is closed once another worker's claim shows.
"""

from __future__ import annotations

import time

import pytest

import kurento
from kurento import pool
from media_tasks import kms_sessions

URL = "ws://127.0.0.1:9/kurento"  # never connected: the client connects on its first request


@pytest.fixture
def db(monkeypatch):
    """The KmsSession records this worker holds, in memory."""
    held: dict[str, str] = {}
    registered: list[str] = []

    def register(cls, session_id, kms_url, owner, now):
        held[session_id] = owner
        registered.append(session_id)

    monkeypatch.setattr(kms_sessions.KmsSession, "register", classmethod(register))
    monkeypatch.setattr(
        kms_sessions.KmsSession,
        "heartbeat",
        classmethod(lambda cls, owner, now: sum(o == owner for o in held.values())),
    )
    monkeypatch.setattr(
        kms_sessions.KmsSession, "held_by", classmethod(lambda cls, owner: {s for s, o in held.items() if o == owner})
    )
    monkeypatch.setattr(kms_sessions, "_renewed", {})
    monkeypatch.setattr(kms_sessions, "_given_up", set())
    monkeypatch.setattr(kms_sessions, "_taken_over", {})
    monkeypatch.setattr(kms_sessions, "_start_guard", lambda: None)  # the test calls give_up_lapsing itself
    return held, registered


@pytest.fixture
def pooled(monkeypatch):
    client = kurento.KurentoClient(URL, session_id="own-session")
    monkeypatch.setitem(pool._clients, URL, client)
    yield client
    client.close()


def test_a_session_not_renewed_leaves_the_pool_and_only_relays(db, pooled):
    held, registered = db
    kms_sessions.register_own(pooled)
    assert registered == ["own-session"]
    kms_sessions.heartbeat()
    renewed = time.monotonic()

    assert kms_sessions.give_up_lapsing(renewed + kms_sessions.GIVE_UP_S - 0.2) == []
    assert pool._clients.get(URL) is pooled

    assert kms_sessions.give_up_lapsing(renewed + kms_sessions.GIVE_UP_S + 0.2) == ["own-session"]
    assert pool._clients.get(URL) is None  # the next get_client builds a new client
    assert kms_sessions.taken_over() == ["own-session"]  # still relaying its endpoints' events
    kms_sessions.register_own(pooled)  # a task that still had it creates an endpoint
    assert registered == ["own-session"]  # never registered again

    kms_sessions.heartbeat()  # renewed: nobody claimed it, the relay stays
    assert kms_sessions.taken_over() == ["own-session"]


def test_a_relay_is_closed_once_another_workers_claim_shows(db, pooled):
    held, _registered = db
    kms_sessions.register_own(pooled)
    kms_sessions.give_up_lapsing(time.monotonic() + kms_sessions.GIVE_UP_S + 0.2)
    held["own-session"] = "another-worker"  # claimed while this worker could not renew

    kms_sessions.heartbeat()
    assert kms_sessions.taken_over() == []
    assert pooled._closed.is_set()


def test_renewed_sessions_stay_in_use(db, pooled):
    kms_sessions.register_own(pooled)
    for _ in range(3):
        kms_sessions.heartbeat()
        assert kms_sessions.give_up_lapsing(time.monotonic()) == []
    assert pool._clients.get(URL) is pooled
    assert kms_sessions.taken_over() == []
