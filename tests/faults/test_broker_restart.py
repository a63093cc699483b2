"""RabbitMQ restart under load, on a PRIVATE RabbitMQ node (the machine's shared broker serves
other test runs and is never touched).

The node is stopped cleanly and started again on the same mnesia directory, so durable queues
(quorum shard queues, classic participant queues) and persistent messages survive, as they do
when a production broker restarts. Web instances and workers must reconnect by themselves,
/ready must say 503 while the broker is away and 200 after, and no acknowledged request (a 202
the client got) and no message already sitting in a queue may be lost.

Duplicates: only of posts the client had to send again under a new Idempotency-Key. A restart
makes work run twice: (1) a web instance's task publish reached the broker but its confirm was
lost with the connection, the client got 503 and retried under the same key, enqueueing the
task again; (2) a worker's publish was unconfirmed when the broker stopped, so `flush` fails
and the task runs again; (3) a task finished but its ack was lost with the connection and the
broker redelivers it. Each re-run publishes under the message ids of the first run (derived
from the task id, itself derived from the Idempotency-Key), so the outboxes drop the copies.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, PrivateRabbit, first_event_after, record_figures, task_times

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not PrivateRabbit.available(), reason="rabbitmq-server is not installed"),
]

DOWN_S = 4.0


def _queue_depths(rabbit: PrivateRabbit, names: set[str]) -> dict[str, int]:
    depths = {}
    for line in rabbit.rabbitmqctl("list_queues", "-q", "name", "messages").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in names and parts[1].isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


def test_rabbitmq_restart_under_load_loses_no_acknowledged_request(fault_dir):
    rabbit = PrivateRabbit(fault_dir / "rabbit")
    rabbit.start()
    stack = None
    call = None
    try:
        stack = FaultStack(fault_dir, rabbit.url, kms_count=2, worker_count=2, web_count=2).start()
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(1)
        call.wait_chat(30)

        # One client stops polling, so messages wait for it in its RabbitMQ queue across the restart.
        sleeper = call.clients[0]
        sleeper.pause_polling()
        time.sleep(call.poll_wait + 1)  # its last long poll has returned
        call.chat_round(2)
        prefix = stack.env["SIGNALING_PREFIX"]
        sleeper_queue = f"{prefix}.participant.{sleeper.participant_id}"
        deadline = time.monotonic() + 20
        while _queue_depths(rabbit, {sleeper_queue}).get(sleeper_queue, 0) < 2 * len(call.members(sleeper)):
            assert time.monotonic() < deadline, "messages never reached the paused client's queue"
            time.sleep(0.2)
        queued_before_stop = _queue_depths(rabbit, {sleeper_queue})[sleeper_queue]

        # Load through the outage: chat rounds keep coming; clients retry 503s with their Idempotency-Key.
        stop_load = threading.Event()
        load_errors: list[BaseException] = []

        def chatter() -> None:
            try:
                while not stop_load.is_set():
                    call.chat_round(1)
                    time.sleep(0.2)
            except BaseException as exc:  # noqa: BLE001
                load_errors.append(exc)

        loader = threading.Thread(target=chatter, daemon=True)
        loader.start()
        time.sleep(1.0)
        stop_began = time.monotonic()
        rabbit.stop()
        stopped_at = time.monotonic()
        stopped_wall = time.time()
        ready_during = [stack.ready_status(b, timeout=15) for b in stack.base_urls]
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped_at)))
        ready_still = [stack.ready_status(b, timeout=15) for b in stack.base_urls]
        up_s = rabbit.start()
        up_at = time.monotonic()
        up_wall = time.time()
        ready_after = stack.wait_ready(90)
        time.sleep(2.0)
        stop_load.set()
        loader.join(120)
        assert not load_errors, load_errors
        sleeper.resume_polling()
        call.subscribe_all()
        call.wait_answers(90)
        call.wait_chat(90)
        settled = time.monotonic() - up_at
        time.sleep(1.0)

        assert ready_during == [503, 503] and ready_still == [503, 503], (ready_during, ready_still)
        # Workers reconnected by themselves (Celery's consumer retries with a growing back-off)
        # and ran tasks again.
        reconnected = []
        for worker in stack.workers:
            assert worker.alive(), f"{worker.name} died"
            deadline = time.monotonic() + 45
            # Counted from the stop: AMQP answers a moment before rabbit.start() returns, and a
            # worker whose back-off ends just then connects before up_wall is taken.
            while (at := first_event_after(worker.log_path, "Connected to amqp", stopped_wall)) is None:
                assert time.monotonic() < deadline, f"{worker.name} did not reconnect"
                time.sleep(0.5)
            reconnected.append(max(0.0, at - up_wall))
        done_after = [at for w in stack.workers for at in task_times([w.log_path]).values() if at > up_wall]
        assert done_after, "no task ran after the restart"
        first_task_after = min(done_after) - up_wall
        delivery = call.check_delivery()
        duplicated, rekeyed = call.duplicated_chats(), call.rekeyed_chats()
        assert duplicated <= rekeyed, f"duplicates not explained by a re-keyed post: {sorted(duplicated - rekeyed)}"
        state = call.check_state(stack.kms_urls)
        statuses = sum((c.stats.statuses for c in call.clients), start=type(call.clients[0].stats.statuses)())
        record_figures(
            "broker_restart",
            {
                "broker_stop_s": round(stopped_at - stop_began, 2),
                "broker_down_s": round(up_at - up_s - stopped_at, 2),
                "broker_boot_s": round(up_s, 2),
                "ready_during_outage": ready_during,
                "ready_200_after_broker_up_s": round(ready_after, 2),
                "first_task_done_after_broker_up_s": round(first_task_after, 2),
                "workers_reconnected_after_broker_up_s": [round(r, 2) for r in reconnected],
                "all_acknowledged_delivered_after_broker_up_s": round(settled, 2),
                "messages_in_paused_queue_across_restart": queued_before_stop,
                "client_answers_by_status": dict(statuses),
                "client_connection_errors": sum(c.stats.connection_errors for c in call.clients),
                "chat_messages_duplicated": len(call.duplicated_chats()),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        if stack:
            stack.stop()
        rabbit.stop()
