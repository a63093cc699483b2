"""A poll lease kept in a web process between polls of its participant (messaging.mailbox.LeaseKeeper).

What must hold when the next poll does not come back to that process: a poll at another
instance waits beside the kept lease and takes it once released, with what the kept
subscription held back in the queue in its order; and a process killed while keeping a lease,
with messages stored and its last_seq never written, loses nothing and repeats nothing.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.faults.harness import kill_tree
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration


def _released(participant_id: str):
    from models import Participant

    return wait_until(
        lambda: (p := Participant.objects(id=participant_id).first()).poll_owner is None and p,
        "the kept poll lease released",
    )


def _poll(base: str, member, after: int, wait: float) -> dict:
    url = f"{base}/api/v1/sessions/{member.session_id}/participants/{member.participant_id}/messages"
    response = requests.get(url, params={"after": after, "wait": wait}, headers=member.headers, timeout=wait + 30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_poll_at_another_instance_takes_over_once_the_kept_lease_is_released(api, stack, db):
    from messaging import mailbox
    from models import OutboxMessage, Participant
    from settings import load_settings

    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    sid, pid = alice.session_id, alice.participant_id
    box = mailbox.Mailbox(load_settings(stack.env))  # this process: the instance keeping the lease
    try:
        got = box.poll(sid, pid, 0, wait=5, limit=100)
        while not any(m["type"] == "participantJoined" for m in got.messages):
            got = box.poll(sid, pid, got.last_seq, wait=5, limit=100)
        acked = got.last_seq
        assert bob.send({"n": 1}, to=pid).status_code == 202
        first = box.poll(sid, pid, acked, wait=5, limit=100)
        assert [m["payload"] for m in first.messages] == [{"n": 1}]
        kept = Participant.objects(id=pid).first()
        assert kept.poll_owner is not None and kept.last_seq < first.last_seq, "kept in this process, not written"

        # Two more reach the consumer this process keeps running; the client polls elsewhere.
        for n in (2, 3):
            assert bob.send({"n": n}, to=pid).status_code == 202
        time.sleep(0.5)
        got_elsewhere = []
        after_elsewhere = first.last_seq
        deadline = time.monotonic() + 20
        while len([m for m in got_elsewhere if m["type"] == "message"]) < 2:
            assert time.monotonic() < deadline, f"never delivered elsewhere; got {got_elsewhere}"
            body = _poll(stack.base_url, alice, after_elsewhere, wait=5)
            got_elsewhere += body["messages"]
            after_elsewhere = body["last_seq"]
    finally:
        box.close()
    # Requeued by this process when it released the lease, moved by the other: each once, in
    # seq order right after the acknowledged one, which never came back.
    assert [m["seq"] for m in got_elsewhere] == [first.last_seq + 1, first.last_seq + 2], got_elsewhere
    assert sorted(m["payload"]["n"] for m in got_elsewhere) == [2, 3]
    assert OutboxMessage.objects(participant_id=pid, seq__gt=acked).count() == 3
    final = _released(pid)
    assert final.acked_seq >= first.last_seq


def test_a_web_process_killed_while_keeping_a_lease_loses_and_repeats_nothing(api, stack, db):
    from models import OutboxMessage, Participant
    from signaling_cli import processes

    holder = processes.start_web(stack.env, stack.log_dir, name="web-keeping-leases")
    try:
        base = f"http://127.0.0.1:{holder.port}"
        session = api.create_session()
        alice, bob = api.join(session, "alice"), api.join(session, "bob")
        alice.wait_type("participantJoined", participant_id=bob.participant_id)
        pid = alice.participant_id
        acked = _released(pid).last_seq  # the stack's web instance kept it a moment, too

        # Two delivering polls through the holder: the second takes the kept lease over and
        # stores without writing the participant; the client acknowledges the first with it.
        assert bob.send({"n": 1}, to=pid).status_code == 202
        one = _poll(base, alice, acked, wait=5)
        assert [m["payload"] for m in one["messages"]] == [{"n": 1}]
        assert bob.send({"n": 2}, to=pid).status_code == 202
        two = _poll(base, alice, one["last_seq"], wait=5)
        assert [m["payload"] for m in two["messages"]] == [{"n": 2}]
        # A third reaches the holder's kept consumer, or waits in the queue: unacknowledged either way.
        assert bob.send({"n": 3}, to=pid).status_code == 202
        kill_tree(holder)
        stranded = Participant.objects(id=pid).first()
        assert stranded.poll_owner is not None, "killed before its kept lease was released"
        assert stranded.last_seq < two["last_seq"] and stranded.acked_seq < one["last_seq"]

        # The client goes on at the surviving instance, acknowledging everything it got.
        got, after = [], two["last_seq"]
        deadline = time.monotonic() + 30
        while not any(m["type"] == "message" for m in got):
            assert time.monotonic() < deadline, f"the third message never came; got {got}"
            body = _poll(stack.base_url, alice, after, wait=5)
            got += body["messages"]
            after = body["last_seq"]
        assert [(m["seq"], m["payload"]) for m in got] == [(two["last_seq"] + 1, {"n": 3})], got
        entries = OutboxMessage.objects(participant_id=pid, seq__gt=acked).order_by("seq")
        assert [e.seq for e in entries] == [acked + 1, acked + 2, acked + 3]
        released = _released(pid)
        assert (released.last_seq, released.acked_seq) == (acked + 3, acked + 2)
    finally:
        kill_tree(holder)
