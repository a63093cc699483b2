"""`kill -9` of a worker in the middle of tasks under load.

Tasks are acks_late + reject_on_worker_lost on quorum shard queues, prefetch 1: whatever the
killed worker had received and not finished is unacknowledged, so RabbitMQ hands it to the
other workers when the dead connection closes. The call must not notice beyond a delay.

Duplicates: none. A redelivered `media.send_message` that had already published before the
kill publishes again, under the message id its first run used (derived from the task id), and
the participants' outboxes drop the copy.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, in_flight, kill_tree, record_figures, task_states, task_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_of_a_worker_under_load_loses_and_repeats_nothing(fault_dir, vhost_url):
    stack = FaultStack(fault_dir, vhost_url, kms_count=2, worker_count=3, web_count=2).start()
    call = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=3, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(1)

        # Load: every participant subscribes to every other one and chats, all at once.
        load_done = threading.Event()
        load_error: list[BaseException] = []

        def load() -> None:
            try:
                for _round in range(3):
                    threads = [
                        threading.Thread(target=call.subscribe_all if _round == 0 else call.chat_round, daemon=True),
                        threading.Thread(target=call.chat_round, args=(3,), daemon=True),
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
            except BaseException as exc:  # noqa: BLE001 - reported below
                load_error.append(exc)
            finally:
                load_done.set()

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        # Kill the worker that has the most tasks received and not finished (its unacked deliveries).
        victim, victim_tasks, deadline = None, {}, time.monotonic() + 20
        while time.monotonic() < deadline and not load_done.is_set():
            busiest = max(stack.live_workers, key=lambda w: len(in_flight(w.log_path)))
            tasks = in_flight(busiest.log_path)
            if len(tasks) >= 2:
                kill_tree(busiest)
                killed_at = time.time()
                victim, victim_tasks = busiest, in_flight(busiest.log_path)
                break
            time.sleep(0.005)
        assert victim is not None, "no worker had tasks in flight to be killed"
        loader.join(120)
        assert not load_error, load_error
        call.wait_answers(60)
        call.wait_chat(60)
        settled = time.time()

        # Every task the victim held was run to the end by another worker (redelivered, not lost).
        others = [w.log_path for w in stack.workers if w is not victim]
        done_elsewhere = task_times(others, "succeeded")
        redelivered = {tid: name for tid, name in victim_tasks.items() if tid in done_elsewhere}
        assert redelivered == victim_tasks, f"tasks of the killed worker never completed: {victim_tasks}"
        recovery = max(done_elsewhere[tid] for tid in victim_tasks) - killed_at
        # ... and no task ran to completion twice anywhere except those redelivered ones.
        twice = {tid for w in stack.workers for tid, t in task_states(w.log_path).items() if t["succeeded"] > 1}
        assert not twice, twice

        time.sleep(1.0)  # let the last gathering events arrive before counting endpoints
        delivery = call.check_delivery()
        assert not call.duplicated_chats(), call.duplicated_chats()
        state = call.check_state(stack.kms_urls)
        slowest_offer = max(
            (next(t for t, m in c.inbox if m["type"] == "sdpAnswer" and m["request_id"] == rid) - at)
            for c in call.clients
            for rid, (_s, at) in c.offers.items()
        )
        gathering_missing = sum(
            1
            for c in call.clients
            for stream in call.expected_streams(c)
            if not any(m.get("stream") == stream for m in c.messages("iceGatheringDone"))
        )
        record_figures(
            "worker_kill",
            {
                "tasks_in_flight_on_killed_worker": len(victim_tasks),
                "in_flight_task_names": sorted(set(victim_tasks.values())),
                "recovery_s_kill_to_last_redelivered_task_done": round(recovery, 2),
                "slowest_offer_to_answer_s": round(slowest_offer, 2),
                "load_settled_after_kill_s": round(settled - killed_at, 2),
                "streams_without_iceGatheringDone": gathering_missing,
                "chat_messages_duplicated": len(call.duplicated_chats()),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
