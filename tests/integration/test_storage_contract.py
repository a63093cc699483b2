"""Every MongoDB operation the service relies on, checked against the server in use.

Runs against the nx-27017 stand-in in CI and against a real MongoDB whenever MONGODB_URI
points at one. Each test names the operator it depends on; concurrency tests use threads
with their own pymongo sockets, so races are real.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

import kurento
from models import (
    PUBLISH,
    Endpoint,
    IdempotencyRecord,
    JoinGrant,
    MediaServer,
    OutboxMessage,
    Participant,
    ParticipantState,
    Session,
    SessionState,
    connect_db,
)
from settings import Settings

pytestmark = pytest.mark.integration

FAKE_KMS = "ws://127.0.0.1:1/kurento"  # proxies only; never contacted


@pytest.fixture(scope="module", autouse=True)
def database(mongodb_uri):
    connect_db(Settings(mongodb_uri=mongodb_uri, secret_key="x"))
    for document in (Session, Participant, Endpoint, IdempotencyRecord, MediaServer, OutboxMessage):
        document.ensure_indexes()


def proxy(type_name: str = "MediaPipeline"):
    cls = getattr(kurento, type_name)
    return kurento.get_client(FAKE_KMS).proxy(f"{uuid.uuid4()}_kurento.{type_name}", cls)


def race(count: int, action) -> list:
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_a_minted_join_token_is_consumed_once_and_given_back_only_by_its_consumer():
    # findAndModify {used_by: null, expires_at: {$gt: now}} $set; update {used_by: pid} $set null
    from datetime import UTC, datetime, timedelta

    session_id = uuid.uuid4().hex
    token, _grant = JoinGrant.mint(session_id, "moderator", "Mo", {"a.b": 1, "$c": 2}, 60)
    winners = [g for g in race(8, lambda i: JoinGrant.consume(session_id, token, f"p{i}")) if g is not None]
    assert len(winners) == 1 and winners[0].role == "moderator"
    assert winners[0].metadata == {"a.b": 1, "$c": 2}  # stored as JSON text: any key
    assert JoinGrant.consume(uuid.uuid4().hex, token, "other") is None  # another session's token: none
    JoinGrant.give_back(token, "not-the-consumer")
    assert JoinGrant.consume(session_id, token, "late") is None
    JoinGrant.give_back(token, winners[0].used_by)
    assert JoinGrant.consume(session_id, token, "again").used_by == "again"
    expired, _ = JoinGrant.mint(session_id, "publisher", None, None, 60, now=datetime.now(UTC) - timedelta(hours=1))
    assert JoinGrant.consume(session_id, expired, "p") is None
    assert JoinGrant.find_for(session_id, expired).used_by is None
    assert JoinGrant.purge_expired_before(datetime.now(UTC) - timedelta(minutes=30)) >= 1
    assert JoinGrant.find_for(session_id, expired) is None and JoinGrant.find_for(session_id, token) is not None


def test_a_session_join_token_rotates_only_while_open():  # update_one {state: {$ne: closed}} $set
    session = Session.create("rotating", 4)
    rotated = Session.rotate_join_token(session.id)
    assert rotated and rotated != session.join_token and Session.find(session.id).join_token == rotated
    Session.mark_closed(session.id)
    assert Session.rotate_join_token(session.id) is None


def test_conditional_inc_caps_participants():  # update_one {count: {$lt: max}} $inc
    session = Session(max_participants=5)
    session.save(force_insert=True)
    results = race(12, lambda i: Session.reserve_slot(session.id, f"p{i}", 1.0))
    entries = [entry for entry in results if entry is not None]
    assert len(entries) == 5
    stored = Session.objects(id=session.id).first()
    assert (stored.participant_count, sorted(stored.admitting)) == (5, sorted(entries))
    # $pull of a scalar matched by array membership: exactly one of two settles/revokes wins
    assert Session.settle_admission(session.id, entries[0]) == "open"
    assert Session.settle_admission(session.id, entries[0]) is None
    assert not Session.revoke_admission(session.id, entries[0], 2.0)
    assert Session.revoke_admission(session.id, entries[1], 2.0)
    stored = Session.objects(id=session.id).first()
    assert (stored.participant_count, stored.admitting_count, len(stored.admitting)) == (4, 3, 3)
    assert sorted(entry for _sid, entry in Session.stale_admissions(1.5)) == sorted(entries[2:])
    assert Session.stale_admissions(0.5) == []
    Session.release_slot(session.id)  # {count: {$gt: 0}} $inc -1
    assert Session.objects(id=session.id).first().participant_count == 3


def test_find_one_and_update_stores_exactly_one_pipeline():  # findAndModify {pipeline: null} $set
    session = Session(max_participants=2)
    session.save(force_insert=True)
    candidates = [proxy() for _ in range(8)]
    winners = [w for w in race(8, lambda i: Session.claim_pipeline(session.id, candidates[i])) if w is not None]
    assert len(winners) == 1
    stored = Session.objects(id=session.id).first()
    assert stored.pipeline.id == winners[0].pipeline.id and stored.kms_url == FAKE_KMS
    assert isinstance(stored.pipeline, kurento.MediaPipeline)  # the field gives back a live proxy


def test_one_caller_claims_a_pipeline_creation_until_the_claim_lapses():  # update_one {$or: [$lt, $exists]}
    session = Session(max_participants=2)
    session.save(force_insert=True)
    claims = race(8, lambda i: Session.claim_pipeline_creation(session.id, f"c{i}", 100.0, 110.0))
    assert claims.count(True) == 1
    assert not Session.claim_pipeline_creation(session.id, "late", 109.0, 119.0)
    assert Session.claim_pipeline_creation(session.id, "after-lapse", 111.0, 121.0)  # its holder died
    Session.drop_pipeline_claim(session.id, "someone-else")
    assert not Session.claim_pipeline_creation(session.id, "again", 112.0, 122.0)
    Session.drop_pipeline_claim(session.id, "after-lapse")
    assert Session.claim_pipeline_creation(session.id, "next", 112.0, 122.0)
    assert Session.claim_pipeline(session.id, proxy()) is not None
    assert not Session.claim_pipeline_creation(session.id, "stored-already", 200.0, 210.0)
    # A session stored before the claim fields existed can be claimed too.
    legacy = Session(max_participants=2)
    legacy.save(force_insert=True)
    Session._get_collection().update_one({"_id": legacy.id}, {"$unset": {"pipeline_claim_until": ""}})
    assert Session.claim_pipeline_creation(legacy.id, "first", 100.0, 110.0)


def test_state_transitions_happen_once():  # findAndModify {state: {$ne: closed}}
    session = Session(max_participants=2)
    session.save(force_insert=True)
    assert [r is not None for r in race(6, lambda _i: Session.mark_closed(session.id))].count(True) == 1
    assert Session.objects(id=session.id).first().state == SessionState.CLOSED
    participant = Participant(session_id=session.id, display_name="p")
    participant.save(force_insert=True)
    assert Participant.set_publishing(participant.id, True) is True
    assert Participant.set_publishing(participant.id, True) is False
    assert [r is not None for r in race(6, lambda _i: Participant.mark_left(participant.id, "left"))].count(True) == 1
    assert Participant.objects(id=participant.id).first().left_reason == "left"


def test_a_seq_is_stored_once_and_last_seq_never_goes_back():  # unique (participant_id, seq), $max
    pid = uuid.uuid4().hex
    batches = race(6, lambda i: OutboxMessage.store_many(pid, 0, [(f"m{i}", "{}"), (f"n{i}", "{}")]))
    assert [b.seq_taken for b in batches].count(False) == 1
    assert sorted(len(b.stored) for b in batches) == [0, 0, 0, 0, 0, 2]
    stored_id = OutboxMessage.objects(participant_id=pid, seq=1).first().message_id
    # A redelivered message is skipped, not numbered again, and does not count as a taken seq.
    again = OutboxMessage.store_many(pid, 2, [(stored_id, "{}")])
    assert again.stored == [] and not again.seq_taken
    assert OutboxMessage.highest_seq(pid) == 2 and OutboxMessage.highest_seq("nobody") == 0
    participant = Participant(session_id="s", display_name="p")
    participant.save(force_insert=True)
    Participant.catch_up_seq(participant.id, 5)
    Participant.catch_up_seq(participant.id, 3)
    assert Participant.objects(id=participant.id).first().last_seq == 5


def test_poll_lease_is_exclusive_until_released():  # findAndModify {lease_until: {$lt: now}} + $max
    participant = Participant(session_id="s", display_name="p", last_seq=5)
    participant.save(force_insert=True)
    now = time.time()
    # Not with an acknowledgement beyond last_seq, nor for another session.
    assert Participant.acquire_poll_lease(participant.id, "o", now, now + 30, "web-a", 6) is None
    assert Participant.acquire_poll_lease(participant.id, "o", now, now + 30, "web-a", 0, session_id="t") is None
    taken = race(
        6, lambda i: Participant.acquire_poll_lease(participant.id, f"o{i}", now, now + 30, "web-a", i, session_id="s")
    )
    winners = [(i, doc) for i, doc in enumerate(taken) if doc is not None]
    assert len(winners) == 1
    index, doc = winners[0]
    assert (doc.poll_owner, doc.poll_instance, doc.acked_seq) == (f"o{index}", "web-a", index)
    Participant.release_poll_lease(participant.id, "someone-else", now)
    assert Participant.acquire_poll_lease(participant.id, "late", now + 1, now + 31) is None
    Participant.release_poll_lease(participant.id, f"o{index}", now, trimmed=4, last_seq=9)
    late = Participant.acquire_poll_lease(participant.id, "late", now + 1, now + 31, "web-b", 0)
    # $max: an older `after` never moves the acknowledgement back.
    assert (late.poll_owner, late.acked_seq, late.trimmed_seq, late.last_seq) == ("late", index, 4, 9)
    # A holder whose lease was taken over still moves last_seq forward, never back.
    Participant.release_poll_lease(participant.id, f"o{index}", now, last_seq=12)
    Participant.release_poll_lease(participant.id, "late", now, last_seq=10)
    assert Participant.objects(id=participant.id).first().last_seq == 12


def test_a_poll_lease_taken_over_after_it_lapsed_says_so():  # findAndModify returning the old document
    participant = Participant(session_id="s", display_name="p", last_seq=3)
    participant.save(force_insert=True)
    now = float(int(time.time()))
    first = Participant.acquire_poll_lease(participant.id, "a", now, now + 1, "web-a", 2)
    assert (first.lease_lapsed, first.poll_owner, first.poll_lease_until, first.acked_seq) == (False, "a", now + 1, 2)
    # "a" never released it (its instance died): the next holder is told, to reconcile last_seq.
    again = Participant.acquire_poll_lease(participant.id, "b", now + 2, now + 3, "web-b", 1)
    assert (again.lease_lapsed, again.poll_owner, again.acked_seq, again.last_seq) == (True, "b", 2, 3)
    Participant.release_poll_lease(participant.id, "b", now + 2)
    assert Participant.acquire_poll_lease(participant.id, "c", now + 4, now + 5).lease_lapsed is False


def test_dropped_messages_are_counted_and_their_report_only_moves_forward():  # $inc, $max on release
    participant = Participant(session_id="s", display_name="p")
    participant.save(force_insert=True)
    Participant.count_dropped(participant.id, 3)
    Participant.count_dropped(participant.id, 2)
    now = float(int(time.time()))
    leased = Participant.acquire_poll_lease(participant.id, "a", now, now + 5)
    assert (leased.dropped_count, leased.dropped_reported) == (5, 0)
    Participant.release_poll_lease(participant.id, "a", now, dropped_reported=5)
    Participant.release_poll_lease(participant.id, "a-late", now, dropped_reported=3)
    stored = Participant.objects(id=participant.id).first()
    assert (stored.dropped_count, stored.dropped_reported) == (5, 5)


def test_one_write_renews_the_leases_of_waiting_polls_only():  # update_many by _id $in + owner $in
    now = float(int(time.time()))  # whole seconds: the stand-in rounds floats to 15 digits
    ids = []
    for n in range(4):
        participant = Participant(session_id="s", display_name=f"p{n}")
        participant.save(force_insert=True)
        assert Participant.acquire_poll_lease(participant.id, f"o{n}", now, now + 5, "web-a")
        ids.append(participant.id)
    Participant.release_poll_lease(ids[2], "o2", now)
    # p1's poll ended but its release never reached the database: the instance no longer
    # renews it. p3's lease was taken over by "o9" meanwhile: not renewed for "o3" either.
    assert Participant.renew_poll_leases({ids[0]: "o0", ids[2]: "o2", ids[3]: "o9"}, now + 1, now + 60) == 1
    assert Participant.renew_poll_leases({}, now + 1, now + 60) == 0
    until = {p.id: p.poll_lease_until for p in Participant.objects(id__in=ids)}
    assert [until[i] for i in ids] == [now + 60, now + 5, 0.0, now + 5]
    Participant.acknowledge(ids[0], 7)
    Participant.acknowledge(ids[0], 3)
    assert Participant.objects(id=ids[0]).first().acked_seq == 7


def test_unique_index_makes_one_endpoint_document():  # insert + unique (participant_id, stream)
    created = race(6, lambda _i: Endpoint.ensure("s", "p-unique", PUBLISH))
    assert Endpoint.objects(participant_id="p-unique", stream=PUBLISH).count() == 1
    # The one caller that inserted gets the document as stored, the others None.
    assert [c.id for c in created if c is not None] == [Endpoint.find("p-unique", PUBLISH).id]


def test_an_endpoint_record_is_forgotten_only_while_it_is_stored():  # delete {kurento: ref}
    Endpoint.ensure("s", "p-forget", PUBLISH)
    stored, other = proxy("WebRtcEndpoint"), proxy("WebRtcEndpoint")
    Endpoint.claim_kurento("p-forget", PUBLISH, stored, "r1")
    Endpoint.forget("p-forget", PUBLISH, other)
    assert Endpoint.find("p-forget", PUBLISH).kurento.id == stored.id
    Endpoint.forget("p-forget", PUBLISH, stored)
    assert Endpoint.find("p-forget", PUBLISH) is None


def _buffer_and_claim_race(pid: str) -> tuple[list[str], list[str]]:
    """Eight candidate senders and one endpoint creator race; returns (applied, buffered)."""
    Endpoint.ensure("s", pid, PUBLISH)
    endpoint = proxy("WebRtcEndpoint")
    applied: list[str] = []
    buffered: list[str] = []
    lock = threading.Lock()

    def send(i):
        candidate = {
            "candidate": f"candidate:{i} 1 udp 1 127.0.0.1 {1000 + i} typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        kept = Endpoint.buffer_candidates(pid, PUBLISH, [candidate], cap=100)
        with lock:
            # Not buffered means the endpoint exists: the caller adds it to the live endpoint.
            (buffered if kept else applied).append(candidate["candidate"])

    def claim(_i):
        taken = Endpoint.claim_kurento(pid, PUBLISH, endpoint)
        with lock:
            applied.extend(c["candidate"] for c in taken or [])

    race(9, lambda i: claim(i) if i == 4 else send(i))
    return applied, buffered


def test_buffering_stops_at_the_cap():  # update_one {pending_count: {$lte}} with $push $each and $inc
    pid = f"p-{uuid.uuid4().hex}"
    Endpoint.ensure("s", pid, PUBLISH)
    one = {"candidate": "candidate:1 1 udp 1 127.0.0.1 1000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    assert Endpoint.buffer_candidates(pid, PUBLISH, [one, one], cap=3)
    assert not Endpoint.buffer_candidates(pid, PUBLISH, [one, one], cap=3)
    assert Endpoint.buffer_candidates(pid, PUBLISH, [one], cap=3)
    assert not Endpoint.buffer_candidates(pid, PUBLISH, [one], cap=3)
    stored = Endpoint.find(pid, PUBLISH)
    assert stored is not None and (len(stored.pending_candidates), stored.pending_count) == (3, 3)


def test_no_candidate_is_lost_between_buffering_and_claiming():  # $push $each vs findAndModify $set
    for round_ in range(5):
        pid = f"p-{uuid.uuid4().hex}"
        applied, buffered = _buffer_and_claim_race(pid)
        assert sorted(applied) == sorted({*applied}), f"round {round_}: a candidate was applied twice"
        assert len(applied) == 8, f"round {round_}: lost candidates (buffered {buffered}, applied {applied})"
        assert Endpoint.claim_kurento(pid, PUBLISH, proxy("WebRtcEndpoint")) is None  # second claim loses


def test_answer_is_recorded_once_per_request():  # update_one {answered_request_id: {$ne: id}}
    Endpoint.ensure("s", "p-answer", PUBLISH)
    assert Endpoint.record_published_answer("p-answer", PUBLISH, "r1", "v=0")
    assert not Endpoint.record_published_answer("p-answer", PUBLISH, "r1", "v=0")
    assert Endpoint.record_published_answer("p-answer", PUBLISH, "r2", "v=0")
    assert Endpoint.find("p-answer", PUBLISH).answer_published


def test_one_endpoint_replaces_another_and_claims_its_negotiation():  # findAndModify {kurento: old}
    Endpoint.ensure("s", "p-claim", PUBLISH)
    first = proxy("WebRtcEndpoint")
    assert Endpoint.claim_kurento("p-claim", PUBLISH, first, "r1") == []
    Endpoint.record_published_answer("p-claim", PUBLISH, "r1", "v=0")
    contenders = [proxy("WebRtcEndpoint") for _ in range(6)]
    won = race(6, lambda i: Endpoint.claim_kurento("p-claim", PUBLISH, contenders[i], f"r{i + 2}", replacing=first))
    assert sum(w is not None for w in won) == 1
    winner = [i for i, w in enumerate(won) if w is not None][0]
    stored = Endpoint.find("p-claim", PUBLISH)
    assert stored.kurento.id == contenders[winner].id
    assert (stored.negotiating_request_id, stored.answered_request_id, stored.answer_published) == (
        f"r{winner + 2}",
        "",
        False,
    )
    assert Participant.mark_publishing("nobody") is None


def test_media_server_status_upserts():  # update_one upsert $set / $inc
    url = f"ws://127.0.0.1:{uuid.uuid4().int % 60000}/kurento"
    MediaServer.record_alive(url, 1000, 1.0)
    assert MediaServer.objects(url=url).first().alive
    assert MediaServer.record_failure(url, 2.0) is True
    assert MediaServer.record_failure(url, 3.0) is False
    stored = MediaServer.objects(url=url).first()
    assert (stored.alive, stored.failures) == (False, 2)
    MediaServer.record_alive(url, 500, 4.0)
    assert MediaServer.objects(url=url).first().failures == 0


def test_idempotency_key_claimed_once():  # insert with unique _id
    key = uuid.uuid4().hex
    assert [r is None for r in race(6, lambda _i: IdempotencyRecord.claim(key))].count(True) == 1
    IdempotencyRecord.complete(key, 201, '{"ok":1}')
    assert IdempotencyRecord.claim(key).status_code == 201
    other = uuid.uuid4().hex
    IdempotencyRecord.claim(other)
    IdempotencyRecord.abandon(other)  # delete {status_code: null}
    assert IdempotencyRecord.claim(other) is None


def test_an_abandoned_pending_key_is_taken_over():  # conditional update on created_at
    key = uuid.uuid4().hex
    assert IdempotencyRecord.claim(key, now=1000.0) is None  # its web instance then dies
    assert IdempotencyRecord.claim(key, now=1010.0).status_code is None  # still in progress: 409
    assert IdempotencyRecord.claim(key, now=1031.0) is None  # abandoned: the retry takes it over
    assert IdempotencyRecord.claim(key, now=1032.0).status_code is None


def test_a_pending_key_is_taken_over_only_by_the_same_request():  # conditional update {created_at, fingerprint}
    key = uuid.uuid4().hex
    assert IdempotencyRecord.claim(key, now=1000.0, fingerprint="body-a") is None
    # Another body under the key, even once the claim is abandoned: the record stays the first one's.
    other = IdempotencyRecord.claim(key, now=1031.0, fingerprint="body-b")
    assert other is not None and other.fingerprint == "body-a"
    assert IdempotencyRecord.claim(key, now=1031.0, fingerprint="body-a") is None  # the same request's retry


def test_databases_are_isolated(mongodb_uri):  # deployments share a server, never a collection
    import pymongo

    client = pymongo.MongoClient(mongodb_uri.rsplit("/", 1)[0], serverSelectionTimeoutMS=5000)
    try:
        name = uuid.uuid4().hex
        client[f"iso_a_{name}"]["things"].insert_one({"_id": 1})
        assert client[f"iso_b_{name}"]["things"].count_documents({}) == 0
    finally:
        client.close()


def test_outbox_dedupes_orders_and_trims():  # unique indexes, sort + limit, delete {seq: {$lte}}
    pid = uuid.uuid4().hex
    # insert_many, ordered: the batch goes in one write, numbered from after_seq + 1.
    first = OutboxMessage.store_many(pid, 0, [("m1", '{"n":1}'), ("m2", '{"n":2}')])
    assert first.stored == [(1, '{"n":1}'), (2, '{"n":2}')]
    # A redelivered message in the middle of a batch keeps its first seq; the rest go on after it.
    batch = OutboxMessage.store_many(pid, 2, [("m2", "{}"), ("m3", '{"n":3}')])
    assert batch.stored == [(3, '{"n":3}')] and not batch.seq_taken
    assert [m.seq for m in OutboxMessage.after(pid, 0, 10)] == [1, 2, 3]
    assert [m.seq for m in OutboxMessage.after(pid, 1, 1)] == [2]
    OutboxMessage.trim(pid, 2, now=100.0)
    assert [m.seq for m in OutboxMessage.after(pid, 2, 10)] == [3]
    assert OutboxMessage.store_many(pid, 9, [("m1", "{}")]).stored == []  # redelivered after its ack
    assert OutboxMessage.purge_acknowledged(before=101.0) == 2
    assert OutboxMessage.store_many(pid, 9, [("m1", "{}")]).stored == [(10, "{}")]  # past retention the id is forgotten
    # A seq another poll took stops the batch after what went in before it.
    taken = OutboxMessage.store_many(pid, 9, [("m8", "{}")])
    assert taken.stored == [] and taken.seq_taken


def test_active_participants_by_session_in_join_order():  # find by compound index, sort
    sid = uuid.uuid4().hex
    for name in ("a", "b", "c"):
        Participant(session_id=sid, display_name=name).save(force_insert=True)
        time.sleep(0.002)
    left = Participant.objects(session_id=sid, display_name="b").first()
    Participant.mark_left(left.id, "left")
    assert [p.display_name for p in Participant.active_in(sid)] == ["a", "c"]


def test_announcements_are_remembered():  # $addToSet of a scalar, array-contains query
    participant = Participant(session_id="s", display_name="p")
    participant.save(force_insert=True)
    assert not Participant.was_announced(participant.id, "joined")
    Participant.mark_announced(participant.id, "joined")
    Participant.mark_announced(participant.id, "joined")
    assert Participant.was_announced(participant.id, "joined")
    assert not Participant.was_announced(participant.id, "left")
    assert Participant.objects(id=participant.id).first().announced == ["joined"]


def test_poll_slots_are_exclusive_and_expire():  # insert with unique _id, conditional takeover
    from models.rate_limit import PollSlot

    pid = uuid.uuid4().hex
    slots = race(5, lambda i: PollSlot.acquire(pid, 2, f"o{i}", 1000.0, 1030.0))
    held = [s for s in slots if s is not None]
    assert sorted(held) == [f"{pid}#0", f"{pid}#1"]
    assert PollSlot.acquire(pid, 2, "late", 1031.0, 1061.0) is not None  # a dead holder's lease ran out


# --- operations the background loop, the health monitor and the task wrapper rely on -------------


def test_kms_sessions_register_heartbeat_go_stale_and_are_claimed_once():  # upsert $set, update_many, $lt
    from models import KmsSession

    owner, other = f"w-{uuid.uuid4().hex}", f"w-{uuid.uuid4().hex}"
    ids = [f"ks-{uuid.uuid4().hex}" for _ in range(3)]
    for session_id in ids[:2]:
        KmsSession.register(session_id, FAKE_KMS, owner, 100.0)
    KmsSession.register(ids[2], FAKE_KMS, other, 100.0)
    KmsSession.register(ids[0], FAKE_KMS, owner, 105.0)  # registering again updates, never duplicates
    assert KmsSession.objects(id=ids[0]).count() == 1 and KmsSession.objects(id=ids[0]).first().heartbeat_at == 105.0
    KmsSession.heartbeat(owner, 200.0)  # one write for every session the worker holds
    assert {s.id: s.heartbeat_at for s in KmsSession.objects(id__in=ids)} == {
        ids[0]: 200.0,
        ids[1]: 200.0,
        ids[2]: 100.0,
    }
    stale = [s for s in KmsSession.stale(150.0) if s.id in ids]
    assert [(s.id, s.owner, s.heartbeat_at, s.kms_url) for s in stale] == [(ids[2], other, 100.0, FAKE_KMS)]
    # Claimed on the heartbeat it was seen with: one of the racing workers wins.
    won = race(6, lambda i: KmsSession.claim(ids[2], 100.0, f"heir-{i}", 300.0))
    assert won.count(True) == 1
    taken = KmsSession.objects(id=ids[2]).first()
    assert (taken.owner, taken.heartbeat_at) == (f"heir-{won.index(True)}", 300.0)
    assert not KmsSession.claim(ids[2], 100.0, "late", 301.0)  # its heartbeat moved on
    KmsSession.forget(ids[2])
    assert KmsSession.objects(id=ids[2]).count() == 0


def test_a_lease_has_one_holder_until_it_runs_out():  # insert unique _id, update {until: {$lt}}, renew
    from models import Lease

    name = f"lease-{uuid.uuid4().hex}"
    holders = race(6, lambda i: Lease.hold(name, f"w{i}", 100.0, 110.0))
    assert holders.count(True) == 1
    holder = f"w{holders.index(True)}"
    assert Lease.hold(name, holder, 105.0, 115.0)  # the holder renews
    assert not Lease.hold(name, "other", 112.0, 122.0)  # still held (renewed to 115)
    assert Lease.hold(name, "other", 116.0, 126.0)  # ran out: taken over
    assert not Lease.hold(name, holder, 117.0, 127.0)
    assert Lease.objects(id=name).first().owner == "other"


def test_task_starts_are_counted_by_upsert_inc():  # update_one upsert $inc + $set, then read
    from models import TaskStart

    task_id = uuid.uuid4().hex
    assert TaskStart.count_start(task_id, "media.process_offer") == 1  # upsert creates it at 1
    race(8, lambda _i: TaskStart.count_start(task_id, "media.process_offer"))
    stored = TaskStart.objects(id=task_id).first()
    assert (stored.starts, stored.name) == (9, "media.process_offer")  # no increment lost
    TaskStart.forget(task_id)
    assert TaskStart.count_start(task_id, "media.process_offer") == 1


def test_connection_watch_debounce_is_reported_once():  # update {failed_since: 0}, range + flag update
    Endpoint.ensure("s", "p-watch", PUBLISH)
    starts = race(6, lambda i: Endpoint.mark_failing("p-watch", PUBLISH, 100.0 + i))
    assert starts.count(True) == 1  # one debounce clock
    since = Endpoint.find("p-watch", PUBLISH).failed_since
    assert not Endpoint.claim_failure_report("p-watch", PUBLISH, since - 1)  # not failing long enough yet
    reports = race(6, lambda _i: Endpoint.claim_failure_report("p-watch", PUBLISH, since + 5))
    assert reports.count(True) == 1  # one connectionFailed
    Endpoint.mark_recovered("p-watch", PUBLISH)
    stored = Endpoint.find("p-watch", PUBLISH)
    assert (stored.failed_since, stored.failure_reported) == (0.0, False)
    assert not Endpoint.claim_failure_report("p-watch", PUBLISH, 1e12)  # recovered: nothing to report
    assert Endpoint.mark_failing("p-watch", PUBLISH, 200.0)  # a new failure starts a new clock


def _endpoint(session_id: str, participant_id: str, stream: str, kms_session: str | None = None) -> str:
    """An endpoint document with a stored Kurento object; returns the object id."""
    Endpoint.ensure(session_id, participant_id, stream)
    client = kurento.KurentoClient(FAKE_KMS, session_id=kms_session)  # never connects
    endpoint = client.proxy(f"{uuid.uuid4()}_kurento.WebRtcEndpoint", kurento.WebRtcEndpoint)
    assert Endpoint.claim_kurento(participant_id, stream, endpoint, "r") == []
    return endpoint.id


def test_detaching_a_participant_takes_its_endpoints_and_its_subscribers():  # find x2, delete by _id
    sid = uuid.uuid4().hex
    alice, bob, carol = (f"{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "carol"))
    detached = {
        _endpoint(sid, alice, PUBLISH),
        _endpoint(sid, alice, bob),
        _endpoint(sid, bob, alice),
        _endpoint(sid, carol, alice),
    }
    kept = {_endpoint(sid, bob, PUBLISH), _endpoint(sid, carol, bob)}
    Endpoint.ensure(sid, carol, f"never-negotiated-{uuid.uuid4().hex}")
    refs = Endpoint.detach_all_of(sid, alice)
    assert {ref.rsplit("#", 1)[1] for ref in refs} == detached and all(r.startswith(FAKE_KMS + "#") for r in refs)
    assert {e.kurento.id for e in Endpoint.objects(session_id=sid) if e.kurento is not None} == kept
    assert Endpoint.detach_all_of(sid, alice) == []  # a second call finds nothing left


def test_endpoints_with_a_kurento_object_by_kms_session():  # find {kms_session, kurento: {$ne: null}}
    # media_tasks.kms_sessions._attach re-attaches the event relays of these after a takeover.
    kms_session = f"ks-{uuid.uuid4().hex}"
    with_object = {_endpoint("s", f"p-{uuid.uuid4().hex}", PUBLISH, kms_session) for _ in range(3)}
    _endpoint("s", f"p-{uuid.uuid4().hex}", PUBLISH, f"ks-{uuid.uuid4().hex}")  # another worker's session
    # Same KMS session, object null. (nx-27017's $ne: null also matches a document that lacks the
    # field, where MongoDB does not; claim_kurento always writes kms_session and kurento together,
    # so no such document has a kms_session.)
    participant_id = f"p-{uuid.uuid4().hex}"
    _endpoint("s", participant_id, PUBLISH, kms_session)
    Endpoint._get_collection().update_one({"participant_id": participant_id}, {"$set": {"kurento": None}})
    found = Endpoint.objects(kms_session=kms_session, kurento__ne=None)
    assert {e.kurento.id for e in found} == with_object


def test_a_lost_media_server_moves_its_open_sessions_once():  # find {kms_url, state}, conditional $set
    url = f"ws://127.0.0.1:{uuid.uuid4().int % 60000}/kurento"
    sessions = []
    for _ in range(3):
        session = Session(max_participants=4)
        session.save(force_insert=True)
        Session.claim_pipeline(
            session.id, kurento.get_client(url).proxy(f"{uuid.uuid4()}_kurento.MediaPipeline", kurento.MediaPipeline)
        )
        sessions.append(session.id)
    Session.mark_closed(sessions[2])
    assert sorted(Session.on_server(url)) == sorted(sessions[:2])  # open sessions only
    assert race(6, lambda _i: Session.mark_media_lost(sessions[0], url)).count(True) == 1
    lost = Session.objects(id=sessions[0]).first()
    assert (lost.state, lost.pipeline, lost.kms_url, lost.lost_kms_url) == (SessionState.MEDIA_LOST, None, None, url)
    assert Session.on_server(url) == [sessions[1]]
    assert not Session.mark_media_lost(sessions[2], url)  # a closed session stays closed
    assert not Session.was_announced(sessions[0], "closed")
    Session.mark_announced(sessions[0], "closed")  # $addToSet on the session, array-contains query
    Session.mark_announced(sessions[0], "closed")
    assert Session.was_announced(sessions[0], "closed")
    assert Session.objects(id=sessions[0]).first().announced == ["closed"]


def test_silent_participants_are_found_by_last_seen():  # find {state: joined, last_seen_at: {$lt}}
    sid = uuid.uuid4().hex
    seen = {}
    for name, last_seen in (("quiet", 100.0), ("active", 500.0), ("left", 100.0)):
        participant = Participant(session_id=sid, display_name=name, last_seen_at=last_seen)
        participant.save(force_insert=True)
        seen[name] = participant.id
    Participant.mark_left(seen["left"], "left")
    assert [p.id for p in Participant.silent_since(200.0) if p.session_id == sid] == [seen["quiet"]]


def test_bulk_updates_and_deletes_by_session():  # update_many {session_id, state}, delete_many {session_id}
    sid, other = uuid.uuid4().hex, uuid.uuid4().hex
    joined = []
    for session_id, name in ((sid, "a"), (sid, "b"), (other, "c")):
        participant = Participant(session_id=session_id, display_name=name)
        participant.save(force_insert=True)
        joined.append(participant.id)
    Participant.set_publishing(joined[0], True)
    Participant.set_publishing(joined[2], True)
    # media_tasks.kms_health.fail_over: nobody of the session publishes any more.
    Participant.objects(session_id=sid, state=ParticipantState.JOINED).update(set__publishing=False)
    assert [p.publishing for p in Participant.objects(id__in=joined).order_by("display_name")] == [False, False, True]
    # signaling_web.admission.close and media_tasks.session_lifecycle.finish_close: everyone leaves, once.
    assert (
        Participant.objects(session_id=sid, state=ParticipantState.JOINED).update(
            set__state=ParticipantState.LEFT, set__left_reason="session_closed"
        )
        == 2
    )
    assert (
        Participant.objects(session_id=sid, state=ParticipantState.JOINED).update(
            set__state=ParticipantState.LEFT, set__left_reason="session_closed"
        )
        == 0
    )
    assert [(p.state, p.left_reason) for p in Participant.objects(session_id=sid)] == [
        (ParticipantState.LEFT, "session_closed")
    ] * 2
    assert Participant.objects(id=joined[2]).first().state == ParticipantState.JOINED
    # finish_close and fail_over: every endpoint record of the session goes in one delete.
    for stream in (PUBLISH, "x"):
        _endpoint(sid, joined[0], stream)
    _endpoint(other, joined[2], PUBLISH)
    assert Endpoint.objects(session_id=sid).delete() == 2
    assert Endpoint.objects(session_id=sid).count() == 0 and Endpoint.objects(session_id=other).count() == 1
    # signaling_web.admission.join: a join that failed half-way deletes its participant by id.
    Participant.objects(id=joined[2]).delete()
    assert Participant.objects(id=joined[2]).count() == 0


def test_media_server_selection_reads_fresh_records_only():  # find {url: {$in}, checked_at: {$gt}}
    from media_tasks.kms_pool import select_kms

    port = 20000 + uuid.uuid4().int % 20000
    busy, light, stale, dead, elsewhere = (f"ws://127.0.0.1:{port + i}/kurento" for i in range(5))
    now = time.time()
    MediaServer.record_alive(busy, 900_000, now)
    MediaServer.record_alive(light, 300_000, now)
    MediaServer.record_alive(stale, 1_000, now - 3600)  # the monitor stopped updating it
    MediaServer.record_alive(dead, 1_000, now)
    MediaServer.record_failure(dead, now)
    MediaServer.record_alive(elsewhere, 1, now)  # not one of this deployment's servers
    # Fresh records exist, so nothing is probed: the choice comes from the stored ones alone.
    assert select_kms(Settings(kms_urls=(busy, light, stale, dead), secret_key="x")) == light
    fresh = MediaServer.objects(url__in=[busy, light, stale, dead], checked_at__gt=now - 10)
    assert sorted(s.url for s in fresh) == sorted([busy, light, dead])


def test_metrics_count_by_state():  # count_documents per state, find all media servers
    from observability.web_metrics import StateCollector

    def gauges() -> dict:
        return {
            (family.name, tuple(sample.labels.values())): sample.value
            for family in StateCollector().collect()
            for sample in family.samples
        }

    before = gauges()
    url = f"ws://127.0.0.1:{uuid.uuid4().int % 60000}/kurento"
    MediaServer.record_alive(url, 2048, time.time())
    session = Session(max_participants=4)
    session.save(force_insert=True)
    closed = Session(max_participants=4)
    closed.save(force_insert=True)
    Session.mark_closed(closed.id)
    for name in ("a", "b"):
        Participant(session_id=session.id, display_name=name).save(force_insert=True)
    gone = Participant(session_id=session.id, display_name="c")
    gone.save(force_insert=True)
    Participant.mark_left(gone.id, "left")
    after = gauges()

    def grew(key) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("signaling_sessions", ("open",))) == 1 and grew(("signaling_sessions", ("closed",))) == 1
    assert grew(("signaling_participants", ("joined",))) == 2 and grew(("signaling_participants", ("left",))) == 1
    assert after[("signaling_kms_up", (url,))] == 1
    assert after[("signaling_kms_used_memory_bytes", (url,))] == 2048 * 1024


def test_poll_slot_housekeeping():  # delete {_id, owner}, delete {until: {$lt}}
    from models.rate_limit import STALE_S, PollSlot

    pid = uuid.uuid4().hex
    slot = PollSlot.acquire(pid, 1, "holder", 1000.0, 1030.0)
    PollSlot.release(slot, "someone-else")  # only its holder frees a slot
    assert PollSlot.acquire(pid, 1, "other", 1001.0, 1031.0) is None
    PollSlot.release(slot, "holder")
    assert PollSlot.acquire(pid, 1, "other", 1002.0, 1032.0) == slot
    abandoned = uuid.uuid4().hex
    PollSlot.acquire(abandoned, 1, "dead", 1000.0, 1030.0)
    PollSlot.sweep(1030.0 + STALE_S + 1)
    assert PollSlot.objects(id=f"{abandoned}#0").count() == 0
    assert PollSlot.objects(id=slot).count() == 1  # held until 1032: not stale yet


def test_sessions_list_newest_first_by_a_keyset_cursor():  # find {state, list_key: {$lt}} sort -list_key, limit
    from models.session import list_key

    # In 2200, after every other session of this database: the listing reaches these first.
    at = datetime(2200, 1, 1, tzinfo=UTC)
    ids = sorted(uuid.uuid4().hex for _ in range(3))
    for sid in ids:  # three created in the same millisecond: the id breaks the tie
        Session(id=sid, max_participants=2, created_at=at, list_key=list_key(at, sid)).save(force_insert=True)
    later = at + timedelta(milliseconds=1)
    newest = Session(max_participants=2, created_at=later, state=SessionState.CLOSED)
    newest.list_key = list_key(later, newest.id)
    newest.save(force_insert=True)
    start = list_key(later + timedelta(milliseconds=1), "0" * 32)

    first = Session.page(None, start, 2)
    assert [s.id for s in first.sessions] == [newest.id, ids[2]] and first.next_after == first.sessions[-1].list_key
    second = Session.page(None, first.next_after, 2)
    assert [s.id for s in second.sessions] == [ids[1], ids[0]]
    opened = Session.page(SessionState.OPEN, start, 3)
    assert [s.id for s in opened.sessions] == [ids[2], ids[1], ids[0]]
    assert Session.page(SessionState.CLOSED, start, 1).sessions[0].id == newest.id
    after_mine = Session.page(None, list_key(at, ids[0]), 100).sessions  # strictly after the cursor
    assert not {s.id for s in after_mine} & {*ids, newest.id}


def test_sessions_stored_before_the_listing_get_their_place_once():  # find {list_key: null}, conditional $set
    from models.session import list_key

    old = Session(max_participants=2)
    old.save(force_insert=True)
    Session.objects(id=old.id).update_one(unset__list_key=True)
    assert Session.objects(id=old.id).first().list_key is None
    while Session.backfill_list_keys(limit=500):
        pass
    stored = Session.objects(id=old.id).first()
    assert stored.list_key == list_key(stored.created_at, old.id)
    assert Session.backfill_list_keys() == 0
