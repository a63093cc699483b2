"""RabbitMQ raises its memory alarm (a private node, `set_vm_memory_high_watermark 0.0001`) or its
disk alarm (`set_disk_free_limit` above the free space), which blocks every publishing
connection: the broker stops reading from it, so task publishes from the web get no confirm.
A POST answers 503 in the error shape within about 4 x TASK_PUBLISH_TIMEOUT_S (it used to hang
for the whole alarm), /ready answers 503, long polls (whose connections only consume) keep
answering, from the outbox and from the queues; when the alarm clears, the clients' retries
(same Idempotency-Key) go through and nothing acknowledged is lost.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, PrivateRabbit, record_figures
from tests.faults.probe import chat_probe, is_error_shape, probe, until_status

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not PrivateRabbit.available(), reason="rabbitmq-server is not installed"),
]

PUBLISH_TIMEOUT_S = 1
BOUND_S = 4 * PUBLISH_TIMEOUT_S + 2


ALARMS = {
    # alarm: (command that raises it, command that clears it)
    "memory": (("set_vm_memory_high_watermark", "0.0001"), ("set_vm_memory_high_watermark", "0.6")),
    "disk": (("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB")),
}


def _alarmed(rabbit: PrivateRabbit, alarm: str) -> bool:
    return alarm in rabbit.rabbitmqctl("eval", "rabbit_alarm:get_alarms().")


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_a_broker_alarm_gives_bounded_503s_while_polls_keep_answering(fault_dir, alarm):
    raise_it, clear_it = ALARMS[alarm]
    rabbit = PrivateRabbit(fault_dir / "rabbit")
    rabbit.start()
    stack = None
    call = None
    try:
        stack = FaultStack(
            fault_dir,
            rabbit.url,
            kms_count=1,
            worker_count=2,
            web_count=2,
            extra_env={"TASK_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S)},
        ).start()
        stack.connect_db()
        call = Call(stack.base_urls, sessions=1, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(2)
        call.wait_chat(30)
        alice = call.clients[0]
        base = stack.base_urls[0]
        poll_url = f"{base}/api/v1/sessions/{alice.sid}/participants/{alice.participant_id}/messages"

        rabbit.rabbitmqctl(*raise_it)
        alarm_at = time.monotonic()
        deadline = alarm_at + 30
        while not _alarmed(rabbit, alarm):
            assert time.monotonic() < deadline, f"the {alarm} alarm never went off"
            time.sleep(0.2)
        loader = threading.Thread(target=call.chat_round, args=(1,), daemon=True)
        loader.start()
        key = uuid.uuid4().hex
        post_status, post_took, post_body = chat_probe(base, alice, key)
        # Long polls answer: what was delivered already, from the outbox (after=0), and an empty
        # wait that ends normally.
        old_status, old_took, old_body = probe("GET", poll_url, params={"after": 0, "wait": 0}, headers=alice.auth)
        wait_status, wait_took, _ = probe("GET", poll_url, params={"after": alice.after, "wait": 1}, headers=alice.auth)
        ready_status = stack.ready_status(base)

        rabbit.rabbitmqctl(*clear_it)
        cleared_at = time.monotonic()
        back_s, _ = until_status(lambda: chat_probe(base, alice, key), 202, timeout=60)
        loader.join(120)
        assert not loader.is_alive()
        call.chat_round(1)
        call.wait_chat(60)

        assert post_status == 503 and is_error_shape(503, post_body), (post_status, post_body)
        assert post_took < BOUND_S, f"the 503 took {post_took:.1f} s (bound {BOUND_S} s)"
        assert old_status == 200 and old_body["messages"], (old_status, old_body)
        assert wait_status == 200, wait_status
        assert ready_status == 503, "/ready must say not ready (it hung before)"
        delivery = call.check_delivery()
        assert call.duplicated_chats() <= call.rekeyed_chats()
        state = call.check_state(stack.kms_urls)
        statuses = sum((c.stats.statuses for c in call.clients), start=type(call.clients[0].stats.statuses)())
        record_figures(
            f"broker_{alarm}_alarm",
            {
                "post_503_after_s": round(post_took, 2),
                "poll_from_outbox_status_s": [old_status, round(old_took, 2)],
                "poll_waiting_status_s": [wait_status, round(wait_took, 2)],
                "ready_during_alarm": ready_status,
                "alarm_s": round(cleared_at - alarm_at, 2),
                "same_key_post_202_after_alarm_cleared_s": round(back_s, 2),
                "client_answers_by_status": dict(statuses),
                "chat_messages_duplicated": len(call.duplicated_chats()),
                **delivery,
                **state,
            },
        )
    finally:
        try:
            rabbit.rabbitmqctl(*clear_it)
        except Exception:
            pass
        if call:
            call.stop()
        if stack:
            stack.stop()
        rabbit.stop()
