"""Participant queues that overflow or vanish (issue 11, item 3), against the real broker.

Each test runs a web instance of its own whose settings shorten a limit (the queue arguments
are the joining web instance's), beside the shared stack's workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from signaling_cli import processes
from signaling_cli.processes import ManagedProcess
from tests.faults.harness import queue_names
from tests.support import rabbit
from tests.support.api import Api, Member
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def limited_web(stack, request) -> Iterator[tuple[ManagedProcess, Api]]:
    web = processes.start_web({**stack.env, **request.param}, stack.log_dir, name=f"web-{request.node.name[:40]}")
    try:
        yield web, Api(f"http://127.0.0.1:{web.port}")
    finally:
        web.stop()


def _pair(api: Api) -> tuple[Member, Member]:
    session = api.create_session()
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.wait_type("participantJoined", participant_id=bob.participant_id)
    return alice, bob


def _queue(stack, member: Member) -> str:
    from messaging import topology
    from settings import load_settings

    return topology.participant_queue(load_settings(stack.env), member.session_id, member.participant_id).name


@pytest.mark.parametrize(
    ("limited_web", "sent", "payload_bytes", "kept"),
    [
        # The length guard: 4 messages kept, the 3 oldest dropped.
        ({"PARTICIPANT_QUEUE_MAX_LENGTH": "4"}, 7, 10, 4),
        # The byte guard: bodies of about 1.1 KB in 2.5 KB, so 2 kept.
        ({"PARTICIPANT_QUEUE_MAX_BYTES": "2500"}, 5, 1000, 2),
    ],
    indirect=["limited_web"],
    ids=["max-length", "max-bytes"],
)
def test_an_overflowing_queue_tells_the_client_how_many_messages_it_dropped(
    stack, db, limited_web, sent, payload_bytes, kept
):
    from models import Participant

    _web, api = limited_web
    alice, bob = _pair(api)
    queue = _queue(stack, alice)
    # Alice stops polling; bob sends more than her queue may hold, one at a time so that the
    # broker sees them in send order.
    for n in range(sent):
        assert bob.send({"n": n, "pad": "x" * payload_bytes}, to=alice.participant_id).status_code == 202
        wait_until(
            lambda n=n: rabbit.ready_messages(stack.env["RABBITMQ_URL"], queue) == min(n + 1, kept),
            f"message {n} queued",
        )
    dropped = sent - kept
    wait_until(lambda: Participant.objects(id=alice.participant_id).first().dropped_count == dropped, "drops counted")

    got = alice.poll(wait=2)
    # First the gap, in order, then the newest messages the queue kept.
    assert got[0]["type"] == "messagesDropped" and got[0]["count"] == dropped, got
    assert [m["payload"]["n"] for m in got[1:] if m["type"] == "message"] == list(range(dropped, sent)), got
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(got)))
    # Told once: the next messages come without another notice.
    assert bob.send({"n": sent}, to=alice.participant_id).status_code == 202
    alice.wait_for(lambda m: m["type"] == "message" and m["payload"]["n"] == sent)
    assert [m for m in alice.inbox if m["type"] == "messagesDropped"] == [got[0]]


@pytest.mark.parametrize("limited_web", [{"PARTICIPANT_QUEUE_EXPIRES_S": "2"}], indirect=True)
def test_a_joined_participant_whose_queue_expired_gets_it_back_and_a_resync(stack, db, limited_web):
    _web, api = limited_web
    alice, bob = _pair(api)
    queue = _queue(stack, alice)
    # Alice stays away longer than the queue's x-expires: the broker deletes her queue.
    began = time.monotonic()
    wait_until(lambda: queue not in queue_names(stack.env["RABBITMQ_URL"]), "alice's queue expired")
    expired_after = time.monotonic() - began
    # Published while there was no queue: lost, and alice must learn that she may have missed things.
    assert bob.send({"n": 0}, to=alice.participant_id).status_code == 202

    got = alice.poll(wait=2)
    assert [m["type"] for m in got] == ["resync"] and got[0]["reason"] == "queueExpired", got
    # The queue is back, bound to the session: broadcasts and direct messages reach her again.
    assert queue in queue_names(stack.env["RABBITMQ_URL"])
    assert bob.send({"n": 1}).status_code == 202
    assert bob.send({"n": 2}, to=alice.participant_id).status_code == 202
    alice.wait_for(lambda m: m["type"] == "message" and m["payload"]["n"] == 2)
    assert sorted(m["payload"]["n"] for m in alice.inbox if m["type"] == "message") == [1, 2]
    assert [m["type"] for m in alice.inbox].count("resync") == 1
    print(f"\nqueue expired {expired_after:.1f} s after alice's last poll")
