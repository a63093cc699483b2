"""Long polls as clients use them: many at once, lost responses, two polls of one participant."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import rabbit
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration


def test_a_lost_response_is_delivered_again_until_acknowledged(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.send({"n": 1})
    first = alice.wait_type("message")
    # The client never processed that response (it was lost): the same `after` gets it again.
    url = f"{alice.base}/messages"
    again = requests.get(url, params={"after": 0, "wait": 0}, headers=alice.headers).json()
    assert first in again["messages"]
    done = requests.get(url, params={"after": again["last_seq"], "wait": 0}, headers=alice.headers).json()
    assert done == {"messages": [], "last_seq": again["last_seq"]}
    # Acknowledged is acknowledged: going back to an older `after` does not bring messages back.
    back = requests.get(url, params={"after": 0, "wait": 0}, headers=alice.headers)
    assert back.status_code == 200 and back.json()["messages"] == []


def test_limit_caps_a_poll_and_the_rest_comes_with_the_next(api, stack):
    from messaging import topology
    from settings import load_settings

    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.wait_type("participantJoined", participant_id=bob.participant_id)
    acked = alice.after
    for n in range(5):
        assert bob.send({"n": n}, to=alice.participant_id).status_code == 202
    queue = topology.participant_queue(load_settings(stack.env), session["session_id"], alice.participant_id).name
    wait_until(lambda: rabbit.ready_messages(stack.env["RABBITMQ_URL"], queue) == 5, "five messages queued")
    url = f"{alice.base}/messages"

    def poll(after: int, limit: int) -> list[dict]:
        response = requests.get(url, params={"after": after, "wait": 5, "limit": limit}, headers=alice.headers)
        assert response.status_code == 200, response.text
        return response.json()["messages"]

    # Five wait in the queue; a poll with limit 2 takes at most two of them.
    first = poll(acked, 2)
    assert 1 <= len(first) <= 2
    # Not acknowledged (the same `after`): polls return what they stored, plus what is still queued.
    everything = wait_until(lambda: (got := poll(acked, 500)) and len(got) == 5 and got, "all five stored")
    # (Five sends are five tasks that workers may run in parallel: their order is not the send order.)
    assert sorted(m["payload"]["n"] for m in everything) == [0, 1, 2, 3, 4] and everything[: len(first)] == first
    # Served from the outbox, the limit is exact; each `after` moves on by what was taken.
    pages, after = [], acked
    for _ in range(3):
        page = poll(after, 2)
        pages.append(page)
        after = page[-1]["seq"]
    assert pages == [everything[0:2], everything[2:4], everything[4:]]
    assert requests.get(url, params={"after": after, "wait": 0, "limit": 2}, headers=alice.headers).json() == {
        "messages": [],
        "last_seq": after,
    }


def test_many_waiting_polls_share_a_web_process_and_all_get_the_broadcast(api):
    session = api.create_session(max_participants=256)
    members = [api.join(session, f"p{i}") for i in range(120)]
    for member in members:
        member.poll(wait=0)  # take the join announcements
        member.inbox.clear()
    sender = members[0]

    def wait_for_broadcast(member):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in member.poll(wait=10):
                if message["type"] == "message":
                    return time.monotonic()
        return None

    with ThreadPoolExecutor(len(members)) as pool:
        futures = [pool.submit(wait_for_broadcast, m) for m in members]
        time.sleep(2.0)  # every poll is now waiting on the broker
        sent = time.monotonic()
        assert sender.send({"text": "to everyone"}).status_code == 202
        arrivals = [f.result() for f in futures]
    assert all(arrivals), f"{arrivals.count(None)} of {len(members)} polls never got the broadcast"
    print(f"\nbroadcast reached {len(members)} waiting polls in {max(arrivals) - sent:.3f} s")


def test_two_polls_of_one_participant_never_duplicate_or_reorder(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    for n in range(20):
        assert bob.send({"n": n}, to=alice.participant_id).status_code == 202
    url = f"{alice.base}/messages"

    def poll_once(_i):
        return requests.get(url, params={"after": 0, "wait": 2, "limit": 500}, headers=alice.headers).json()

    time.sleep(1.0)
    # Two at once: the most a participant may hold (MAX_POLLS_PER_PARTICIPANT defaults to 2).
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(poll_once, range(2)))
    # Whatever each poll saw is in seq order, and a seq always names the same message.
    seen: dict[int, dict] = {}
    for body in bodies:
        seqs = [m["seq"] for m in body["messages"]]
        assert seqs == sorted(seqs)
        for message in body["messages"]:
            assert seen.setdefault(message["seq"], message) == message
    alice.after = 0
    everything = [m for m in alice.poll(wait=2, limit=500) if m["type"] == "message"]
    # Each message is its own task, and tasks of a session may run in parallel: the contract
    # orders delivery (seq), not the execution of separate requests.
    assert sorted(m["payload"]["n"] for m in everything) == list(range(20))


def test_a_mover_whose_lease_lapsed_never_makes_a_poll_reuse_a_seq(api, db):
    """A poll on an instance that stalled past its lease stored seq N+1 while another poll took
    the lease over with last_seq N: the unique seq refuses the second, which catches last_seq up,
    and nothing is lost or numbered twice."""
    from models import OutboxMessage, Participant

    session = api.create_session()
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    alice.poll(wait=0)  # the join announcements
    # last_seq is written when the web instance releases the lease it kept for a next poll.
    released = wait_until(
        lambda: (p := Participant.objects(id=alice.participant_id).first()).poll_owner is None and p,
        "the lease kept after that poll released",
    )
    stalled_seq = released.last_seq + 1
    OutboxMessage(
        participant_id=alice.participant_id,
        seq=stalled_seq,
        message_id="stalled-mover",
        body='{"type":"message","from":"stalled","payload":{"n":0}}',
    ).save(force_insert=True)
    assert bob.send({"n": 1}, to=alice.participant_id).status_code == 202
    received = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len([m for m in received if m["type"] == "message"]) < 2:
        received += alice.poll(wait=2)
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(set(seqs)), seqs
    assert [m["payload"]["n"] for m in received if m["type"] == "message"] == [0, 1]
    wait_until(
        lambda: Participant.objects(id=alice.participant_id).first().last_seq == seqs[-1],
        "last_seq recorded when the kept lease is released",
    )


def test_a_lease_left_by_a_failed_release_lapses_while_the_instance_keeps_polling(api, db, monkeypatch):
    """A poll that ended while the database was away could not release its lease. Its web
    instance keeps renewing the leases of its other waiting polls, but never that one: the
    participant is stalled for one lease at most, not for as long as the instance is busy."""
    from messaging import mailbox
    from models import Participant
    from settings import load_settings

    monkeypatch.setattr(mailbox, "LEASE_S", 1.5)
    monkeypatch.setattr(mailbox, "LEASE_RENEW_S", 0.3)
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.poll(wait=0)
    bob.poll(wait=0)
    # The web instance keeps each lease for a next poll a moment: this test's own instance takes over after.
    wait_until(
        lambda: not Participant.objects(id__in=[alice.participant_id, bob.participant_id], poll_owner__ne=None).count(),
        "the leases kept by the web instance released",
    )
    sid = session["session_id"]
    box = mailbox.Mailbox(load_settings(db.env))
    now = time.time()
    assert Participant.acquire_poll_lease(
        alice.participant_id, "poll-whose-release-failed", now, now + 1.5, box.renewer.instance, alice.after, sid
    )
    stale_until = Participant.objects(id=alice.participant_id).first().poll_lease_until

    # Bob keeps a poll waiting on the same instance the whole time, so its renewer keeps writing.
    stop = threading.Event()

    def bob_waits() -> None:
        while not stop.is_set():
            box.poll(sid, bob.participant_id, bob.after, wait=1.0, limit=100)

    waiter = threading.Thread(target=bob_waits)
    waiter.start()
    try:
        assert bob.send({"n": 1}, to=alice.participant_id).status_code == 202
        began = time.monotonic()
        delivery = box.poll(sid, alice.participant_id, alice.after, wait=6.0, limit=100)
        took = time.monotonic() - began
    finally:
        stop.set()
        waiter.join(10)
        box.close()
    assert [m["payload"] for m in delivery.messages if m["type"] == "message"] == [{"n": 1}], delivery
    assert took < 5.0, f"alice stalled {took:.1f} s behind a lease nobody held"
    # The renewals of bob's polls never touched the lease left behind.
    stored = Participant.objects(id=alice.participant_id).first()
    assert stored.poll_owner != "poll-whose-release-failed" and stored.poll_lease_until != stale_until
