"""Issue 11, items 5 and 6: empty sessions end, and every stored record has a lifetime.

A deployment of its own (real worker processes, web, RabbitMQ, nx-27017 and the emulator) with
short lifetimes: the leading worker's sweep closes empty sessions and deletes what outlived its
retention, while joined participants, open sessions and their outboxes stay. Waits are on
conditions with a deadline; the lifetimes are seconds, the sweep runs every half second.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable

import pytest

import kurento
from media_tasks import kms_sessions, lifetimes
from models import (
    PUBLISH,
    Endpoint,
    IdempotencyRecord,
    KmsSession,
    OutboxMessage,
    Participant,
    Session,
    SessionState,
    TaskStart,
    connect_db,
)
from models.retention import ttl_of
from settings import load_settings
from signaling_web.idempotency import seal, unseal
from tests.conftest import stack_env, start_stack

pytestmark = pytest.mark.integration

EMPTY_TIMEOUT_S = 3
RETENTION_S = 4
IDEMPOTENCY_TTL_S = 4


@pytest.fixture(scope="module")
def short_lived(run_dir, rabbitmq_url, mongodb_uri, kms_url):
    env = stack_env(
        rabbitmq_url,
        mongodb_uri,
        [kms_url],
        EMPTY_SESSION_TIMEOUT_S=str(EMPTY_TIMEOUT_S),
        RETENTION_S=str(RETENTION_S),
        IDEMPOTENCY_TTL_S=str(IDEMPOTENCY_TTL_S),
        LIFETIME_SWEEP_S="0.5",
        SIGNALING_API_KEYS="k1",  # closing a session needs the API key
    )
    running = start_stack(env, run_dir / "logs-lifetimes", workers=1)
    yield running
    running.stop()


@pytest.fixture
def api(short_lived):
    connect_db(load_settings(short_lived.env))
    return short_lived.api(api_key="k1")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds it took for condition() to hold; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - start


def state_of(session_id: str) -> str | None:
    session = Session.find(session_id)
    return None if session is None else session.state


def test_an_empty_session_is_closed_as_if_deleted_and_a_joined_one_is_not(api, kms_url):
    never_joined = api.create_session()
    created = time.monotonic()
    emptied = api.create_session()
    alice = api.join(emptied, "alice")
    alice.wait_type("participantJoined", participant_id=alice.participant_id)
    wait_until(lambda: Session.find(emptied["session_id"]).pipeline is not None, 20, "pipeline warmed by the join")
    pipeline_id = Session.find(emptied["session_id"]).pipeline.id
    lively = api.create_session()
    carol = api.join(lively, "carol")

    # Never joined: closed EMPTY_SESSION_TIMEOUT_S after its creation, not before.
    wait_until(lambda: state_of(never_joined["session_id"]) == SessionState.CLOSED, 30, "never-joined session closed")
    assert time.monotonic() - created >= EMPTY_TIMEOUT_S

    # Joined, then left: the clock starts at the leave.
    assert state_of(emptied["session_id"]) == SessionState.OPEN
    assert alice.leave().status_code == 202
    left = time.monotonic()
    wait_until(lambda: state_of(emptied["session_id"]) == SessionState.CLOSED, 30, "emptied session closed")
    assert time.monotonic() - left >= EMPTY_TIMEOUT_S
    # The DELETE path ran: its pipeline is released on the media server.
    client = kurento.KurentoClient(kms_url, request_timeout=10.0)
    try:

        def released() -> bool:
            try:
                client.proxy(pipeline_id, kurento.MediaPipeline).invoke("getChildren")
                return False
            except kurento.KurentoError:
                return True

        wait_until(released, 20, "pipeline of the emptied session released")
    finally:
        client.close()
    joins = api.http.post(
        f"{api.base}/api/v1/sessions/{emptied['session_id']}/participants",
        json={"display_name": "late", "join_token": emptied["join_token"]},
    )
    assert joins.status_code in (404, 409), joins.text

    # A session with a joined participant stays open however long it lasts.
    carol.poll(wait=0)
    assert state_of(lively["session_id"]) == SessionState.OPEN
    assert Participant.is_joined(lively["session_id"], carol.participant_id)


def test_left_participants_and_their_outbox_closed_sessions_and_idempotency_records_expire(api):
    session = api.create_session()
    bob = api.join(session, "bob")
    alice = api.join(session, "alice")
    alice.wait_type("participantJoined", participant_id=alice.participant_id)
    bob.wait_type("participantJoined", participant_id=alice.participant_id)
    assert OutboxMessage.objects(participant_id=alice.participant_id).count() > 0
    assert alice.leave().status_code == 202

    closed = api.create_session()
    api.join(closed, "closer")
    closing = api.http.delete(f"{api.base}/api/v1/sessions/{closed['session_id']}", headers=api.key_headers)
    assert closing.status_code == 202, closing.text

    key = {"Idempotency-Key": secrets.token_hex(8), **api.key_headers}
    first = api.http.post(f"{api.base}/api/v1/sessions", json={"name": "k"}, headers=key)
    assert first.status_code == 201
    replay = api.http.post(f"{api.base}/api/v1/sessions", json={"name": "k"}, headers=key)
    assert replay.json()["session_id"] == first.json()["session_id"]

    wait_until(lambda: Participant.find_in(session["session_id"], alice.participant_id) is None, 30, "left alice gone")
    assert OutboxMessage.objects(participant_id=alice.participant_id).count() == 0
    wait_until(lambda: Session.find(closed["session_id"]) is None, 30, "closed session gone")
    wait_until(
        lambda: (
            api.http.post(f"{api.base}/api/v1/sessions", json={"name": "k"}, headers=key).json()["session_id"]
            != first.json()["session_id"]
        ),
        30,
        "Idempotency-Key forgotten after IDEMPOTENCY_TTL_S",
    )

    # Nothing live went: the joined participant, its outbox and its open session.
    bob.poll(wait=0)
    assert Participant.is_joined(session["session_id"], bob.participant_id)
    assert OutboxMessage.objects(participant_id=bob.participant_id).count() > 0
    assert state_of(session["session_id"]) == SessionState.OPEN

    # MongoDB itself would delete the same documents: TTL indexes with the configured lifetimes.
    for document, field, seconds in (
        (IdempotencyRecord, "stored_at", IDEMPOTENCY_TTL_S),
        (Session, "closed_at", RETENTION_S),
        (TaskStart, "started_at", RETENTION_S),
    ):
        ttl = ttl_of(document, field)
        assert ttl is not None and ttl[1] == seconds, (document, field, ttl)


def test_a_stored_join_answer_does_not_hold_the_participant_token(api, short_lived):
    session = api.create_session()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    body = {"display_name": "dora", "join_token": session["join_token"]}
    url = f"{api.base}/api/v1/sessions/{session['session_id']}/participants"
    first = api.http.post(url, json=body, headers=key)
    assert first.status_code == 201
    token = first.json()["token"]
    stored = [r.body or "" for r in IdempotencyRecord.objects()]
    assert stored and not any(token in text for text in stored), "a participant token is readable in the database"
    replay = api.http.post(url, json=body, headers=key)
    assert replay.status_code == 201 and replay.json()["token"] == token
    assert replay.headers.get("Idempotent-Replayed") == "true"

    secret = short_lived.env["SECRET_KEY"]
    sealed = seal(secret, "raw-key", '{"token": "t"}')
    assert unseal(secret, "raw-key", sealed) == '{"token": "t"}'
    assert unseal(secret, "other-key", sealed) is None
    assert unseal("another secret", "raw-key", sealed) is None


def test_task_starts_expire_after_the_retention_and_running_ones_stay(api, short_lived):
    settings = load_settings(short_lived.env)
    TaskStart.count_start("finished-never", "media.process_offer")
    now = time.time()
    report = lifetimes.SweepReport(closed_sessions=[])
    lifetimes.purge_expired(settings, now + RETENTION_S - 1, report)
    assert TaskStart.objects(id="finished-never").count() == 1, "a task started within the retention was removed"
    time.sleep(0.05)  # the next start is measurably later (dates are stored to the millisecond)
    restarted = time.time()
    TaskStart.count_start("finished-never", "media.process_offer")  # started again: the clock starts again
    # A purge whose cutoff falls between the two starts would have removed the first one only.
    lifetimes.purge_expired(settings, restarted - 0.01 + RETENTION_S, report)
    assert TaskStart.objects(id="finished-never").count() == 1
    lifetimes.purge_expired(settings, time.time() + RETENTION_S + 1, report)
    assert TaskStart.objects(id="finished-never").count() == 0


def test_a_taken_over_kms_client_is_released_once_nothing_needs_it(short_lived, kms_url):
    # A database of its own: the shared emulator carries other tests' open sessions.
    env = {**short_lived.env, "MONGODB_URI": short_lived.env["MONGODB_URI"] + "_takeover"}
    settings = dataclasses.replace(load_settings(env), lifetime_sweep_s=0.5)
    connect_db(settings)
    dead = kurento.KurentoClient(kms_url, request_timeout=10.0)
    pipeline = dead.create_pipeline()
    endpoint = pipeline.create_webrtc_endpoint()
    KmsSession.register(dead.session_id, kms_url, "a-dead-worker", time.time() - 60)
    dead.close()  # the worker died: its KMS session has no connection
    stored = Endpoint(session_id="s", participant_id="p", stream=PUBLISH, kurento=endpoint)
    stored.kms_session = dead.session_id
    stored.save(force_insert=True)
    session = Session(max_participants=2, pipeline=pipeline, kms_url=kms_url)
    session.save(force_insert=True)
    try:
        assert dead.session_id in kms_sessions.take_over_stale(settings)
        assert kms_sessions.release_idle_takeovers() == []  # an endpoint still relays through it
        Endpoint.objects(id=stored.id).delete()
        assert kms_sessions.release_idle_takeovers() == []  # an open session's pipeline may live only there
        Session.mark_closed(session.id)
        assert kms_sessions.release_idle_takeovers() == [dead.session_id]
        assert dead.session_id not in kms_sessions.taken_over()
        assert KmsSession.objects(id=dead.session_id).count() == 0
    finally:
        cleanup = kurento.KurentoClient(kms_url, request_timeout=10.0)
        cleanup.proxy(pipeline.id, kurento.MediaPipeline).release()
        cleanup.close()


def test_purge_keeps_what_is_live_at_any_age(api, short_lived):
    """The sweep's own rule, at a time far past every lifetime: only left, closed or finished goes."""
    settings = load_settings(short_lived.env)
    session = api.create_session()
    member = api.join(session, "erin")
    member.poll(wait=0)
    later = time.time() + 10 * RETENTION_S
    report = lifetimes.SweepReport(closed_sessions=[])
    lifetimes.purge_expired(settings, later, report)
    assert Participant.is_joined(session["session_id"], member.participant_id)
    assert OutboxMessage.objects(participant_id=member.participant_id).count() > 0
    assert Session.find(session["session_id"]) is not None
