"""A task that crashes its worker every time (a poison message) ends dead-lettered.

Each delivery of the poison kills the worker that took it (SIGKILL, so the delivery returns
unacknowledged); the test restarts dead workers as a supervisor or a Kubernetes Deployment
would. A redelivered task counts its starts (media_tasks.base_task): the one that has started
TASK_START_LIMIT (3) times without finishing is rejected to `<prefix>.dead`, while the tasks
fetched alongside it just run again. The shard quorum queues' `x-delivery-limit`
(TASK_DELIVERY_LIMIT, 20) is only the broker's backstop. The session whose shard the poison sat
on keeps working throughout.

Duplicates: none. An innocent `media.send_message` killed with the poison after it had
published runs again and publishes under the message id of its first run (derived from the
task id), which the outboxes drop.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from celery import Celery
from kombu import Connection

from tests.faults.callscript import Call
from tests.faults.harness import POISON_INCLUDE, FaultStack, log_events, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_poison_task_is_dead_lettered_and_does_not_block_its_shard(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir, vhost_url, kms_count=1, worker_count=2, web_count=1, worker_args=POISON_INCLUDE
    ).start()
    call = None
    supervisor_stop = threading.Event()
    restarts = [0]
    try:
        from media_tasks.routing import dead_letter_queue, shard_exchange, shard_for, shard_name

        settings = stack.settings()
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.publish_all()
        call.wait_published()

        def supervise() -> None:
            while not supervisor_stop.is_set():
                restarts[0] += stack.replace_dead_workers()
                time.sleep(0.3)

        supervisor = threading.Thread(target=supervise, daemon=True)
        supervisor.start()

        # The poison goes where session 0's tasks go, like any task of that session.
        sid = call.sessions[0]["session_id"]
        queue = shard_name(settings, shard_for(sid, settings.shards))
        sender = Celery("poison-sender", broker=settings.rabbitmq_url)
        sender.conf.broker_transport_options = {"confirm_publish": True}
        sent_at = time.time()
        poison_id = sender.send_task(
            "test.poison", kwargs={"session_id": sid}, exchange=shard_exchange(settings).name, routing_key=queue
        ).id
        sender.close()

        # Session 0 keeps working while the poison circulates: chat and subscriptions complete.
        call.chat_round(2)
        call.subscribe_all()
        call.chat_round(2)

        dead_name = dead_letter_queue(settings).name
        dead = None
        deadline = time.monotonic() + 120
        with Connection(settings.rabbitmq_url) as conn:
            channel = conn.channel()
            while dead is None:
                assert time.monotonic() < deadline, "the poison task was never dead-lettered"
                dead = channel.basic_get(dead_name, no_ack=False)
                if dead is None:
                    time.sleep(0.5)
            dead_lettered_at = time.time()
            others = []  # innocent tasks dead-lettered with the poison: (task name, kwargs)
            while (other := channel.basic_get(dead_name, no_ack=True)) is not None:
                body = json.loads(other.body)
                others.append(((other.headers or {}).get("task"), body[1] if isinstance(body, list) else body))
            channel.basic_ack(dead.delivery_tag)
        headers = dead.headers or {}
        assert headers.get("id") == poison_id, headers
        death = (headers.get("x-death") or [{}])[0]
        # Rejected by the worker once it had started settings.task_start_limit times (media_tasks.base_task).
        assert death.get("reason") == "rejected" and death.get("queue") == queue, death
        call.wait_answers(60)  # the shard kept serving: every offer of session 0 was answered
        # Chat messages whose send_message task was dead-lettered along with the poison are the
        # only ones allowed to be missing, and they must be exactly those.
        collateral = {
            (kw["payload"]["from"], kw["payload"]["n"])
            for name, kw in others
            if name == "media.send_message" and kw.get("payload", {}).get("tag") == call.tag
        }
        assert {name for name, _kw in others} <= {"media.send_message"}, others
        try:
            call.wait_chat(20)
            missing: set = set()
        except AssertionError:
            missing = {
                key
                for c in call.clients
                for key in {(o.participant_id, n) for o in call.members(c) for n, _t in o.sent}
                - set(c.chat_received(call.tag))
            }
        assert missing == collateral, (missing, collateral)
        supervisor_stop.set()
        supervisor.join(10)
        stack.replace_dead_workers()
        # Visible in the worker logs: each delivery is a "received" line, and the task says what it does.
        deliveries = [
            (at, msg)
            for w in stack.all_workers
            for at, msg in log_events(w.log_path)
            if msg.startswith(f"Task test.poison[{poison_id}] received")
        ]
        kills_logged = sum(
            1 for w in stack.all_workers for _at, msg in log_events(w.log_path) if f"poison task {poison_id}" in msg
        )
        assert 1 <= len(deliveries) <= settings.task_start_limit + 1, deliveries
        assert len(deliveries) == settings.task_start_limit + 1 and kills_logged == settings.task_start_limit
        time.sleep(1.0)
        delivery = {} if collateral else call.check_delivery()
        assert not call.duplicated_chats(), call.duplicated_chats()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "poison_task",
            {
                "start_limit": settings.task_start_limit,
                "poison_deliveries_logged": len(deliveries),
                "workers_killed_and_restarted": restarts[0],
                "dead_lettered_after_s": round(dead_lettered_at - sent_at, 2),
                "x_death": {k: death.get(k) for k in ("reason", "queue", "count")},
                "other_tasks_dead_lettered": [name for name, _kw in others],
                "acknowledged_chat_messages_lost_with_the_poison": len(collateral),
                **delivery,
                **state,
            },
        )
        # Tasks fetched together with the poison are redelivered with it, but only the task that
        # keeps killing its worker reaches the start limit: nothing else is dead-lettered.
        assert not others and not collateral, others
    finally:
        supervisor_stop.set()
        if call:
            call.stop()
        stack.stop()
