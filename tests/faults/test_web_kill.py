"""`kill -9` of one of two web instances while clients long-poll through it.

Clients fail over to the other instance with the same `after`. Nothing is lost: what the dead
instance had moved into the outbox is answered again from MongoDB, and what it had received
from RabbitMQ and not acknowledged is requeued when its connection dies. The price is a
stall: the dead instance's poll lease (Participant.poll_lease_until, 6 s, renewed every 2 s by
a live instance) must run out before another instance may move new messages out of the queue.

Duplicates: a copy requeued by the dead instance keeps its message id and is dropped by the
outbox, so the only way a chat message can arrive twice is a post that was in flight on the
dead instance and that the client sent again under a new Idempotency-Key (its first attempt
may have been enqueued before the instance died). The test asserts exactly that.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, kill_tree, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_WAIT = 10.0


def test_kill_9_of_a_web_instance_moves_clients_without_loss(fault_dir, vhost_url):
    stack = FaultStack(fault_dir, vhost_url, kms_count=2, worker_count=2, web_count=2).start()
    call = None
    try:
        stack.connect_db()
        # Every client sends and long-polls through instance 0, the one that dies.
        call = Call(stack.base_urls, sessions=2, per_session=3, poll_wait=POLL_WAIT, poll_bases=[0])
        call.publish_all()
        call.wait_published()
        call.chat_round(1)
        call.wait_chat(30)

        stop_chat = threading.Event()
        acked_after_kill: list = []

        def chatter() -> None:
            while not stop_chat.is_set():
                call.chat_round(1)
                time.sleep(0.3)

        sender = threading.Thread(target=chatter, daemon=True)
        sender.start()
        time.sleep(1.5)  # polls are now parked on instance 0, some holding messages
        kill_tree(stack.webs[0])
        killed_at = time.monotonic()
        time.sleep(3.0)
        stop_chat.set()
        sender.join(120)
        for c in call.clients:
            acked_after_kill += [(c, n, at) for n, at in c.sent if at > killed_at]
        call.subscribe_all()  # offers after the failover, through the surviving instance
        call.wait_answers(60)
        call.wait_chat(60)

        # How long did messages sent after the kill take to reach each recipient?
        lateness = []
        for sender_client, n, at in acked_after_kill:
            for c in call.members(sender_client):
                arrival = c.arrival_of(
                    lambda m, s=sender_client, n=n: (
                        m["type"] == "message"
                        and m["payload"].get("tag") == call.tag
                        and (m["payload"]["from"], m["payload"]["n"]) == (s.participant_id, n)
                    )
                )
                lateness.append(arrival - at)
        first_poll_answer = [
            min(t for t, _m in [(t, m) for t, m in c.inbox if t > killed_at]) - killed_at
            for c in call.clients
            if any(t > killed_at for t, _m in c.inbox)
        ]
        delivery = call.check_delivery()
        state = call.check_state(stack.kms_urls)
        assert all(c.poll_http.prefer % 2 == 1 for c in call.clients), "every client moved to instance 1"
        duplicated, rekeyed = call.duplicated_chats(), call.rekeyed_chats()
        assert duplicated <= rekeyed, f"duplicates not explained by a re-keyed post: {sorted(duplicated - rekeyed)}"
        record_figures(
            "web_kill",
            {
                "poll_wait_s": POLL_WAIT,
                "messages_acknowledged_after_kill": len(acked_after_kill),
                "max_delivery_delay_after_kill_s": round(max(lateness), 2),
                "median_delivery_delay_after_kill_s": round(sorted(lateness)[len(lateness) // 2], 2),
                "first_message_after_kill_s_max_over_clients": round(max(first_poll_answer), 2),
                "client_connection_errors": sum(c.stats.connection_errors for c in call.clients),
                "stale_idempotency_claims": sum(c.stats.stale_idempotency for c in call.clients),
                "chat_posts_rekeyed": len(rekeyed),
                "chat_messages_duplicated": len(duplicated),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
