"""A late task for a closed session publishes while other sessions chat on the same worker.

No broker fault at all: a chat post accepted just before its session closed has its task run
after the close deleted the session's exchange. Before issue 11 item 2 that publish made the
broker close the worker's one publisher channel; the task whose publish or flush read the close
failed (a failed task is acknowledged), and the others on the channel had their counters reset.
Now broadcasts go through the never-deleted `<prefix>.broadcast` exchange (a closed session's
routes nowhere) and confirms are accounted per task: every task succeeds, every acknowledged chat
of the live sessions arrives.
"""

from __future__ import annotations

import time

import pytest
import requests
from celery import Celery

from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, record_figures, task_states
from tests.support import rabbit

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATE_TASKS = 12
API_KEY = "late-publish-key"  # closing a session needs the API key


def test_late_tasks_of_a_closed_session_do_not_cost_other_sessions_their_messages(fault_dir, vhost_url):
    # One worker: the late tasks and the chat share its one publisher channel.
    stack = FaultStack(
        fault_dir, vhost_url, kms_count=1, worker_count=1, web_count=1, extra_env={"SIGNALING_API_KEYS": API_KEY}
    ).start()
    call = None
    try:
        from media_tasks.routing import shard_exchange, shard_for, shard_name
        from messaging import topology

        settings = stack.settings()
        base = stack.base_urls[0]
        key = {"X-API-Key": API_KEY}
        closed = requests.post(f"{base}/api/v1/sessions", json={"name": "closing"}, headers=key, timeout=10).json()
        member = requests.post(
            f"{base}/api/v1/sessions/{closed['session_id']}/participants",
            json={"display_name": "m", "join_token": closed["join_token"]},
            timeout=10,
        ).json()
        call = Call(stack.base_urls, sessions=2, per_session=3, api_key=API_KEY)
        call.chat_round(1)

        answer = requests.delete(f"{base}/api/v1/sessions/{closed['session_id']}", headers=key, timeout=10)
        assert answer.status_code == 202, answer.text
        exchange = topology.session_exchange(settings, closed["session_id"]).name
        deadline = time.monotonic() + 30
        while exchange in rabbit.exchanges(vhost_url):
            assert time.monotonic() < deadline, "the closed session's exchange was never deleted"
            time.sleep(0.1)

        # Late chat tasks for the closed session (accepted before the close, run after it),
        # sent exactly as the web tier sends them, between rounds of chat in the live sessions.
        sender = Celery("late-sender", broker=settings.rabbitmq_url)
        sender.conf.broker_transport_options = {"confirm_publish": True}
        queue = shard_name(settings, shard_for(closed["session_id"], settings.shards))
        late_ids = []
        for n in range(LATE_TASKS):
            late_ids.append(
                sender.send_task(
                    "media.send_message",
                    kwargs={
                        "session_id": closed["session_id"],
                        "sender_id": member["participant_id"],
                        "payload": {"late": n},
                        "to": None,
                    },
                    exchange=shard_exchange(settings).name,
                    routing_key=queue,
                ).id
            )
            call.chat_round(1)
        sender.close()
        call.chat_round(2)
        call.wait_chat(timeout=60)
        figures = call.check_delivery()

        (worker,) = stack.all_workers
        deadline = time.monotonic() + 30
        while True:
            states = task_states(worker.log_path)
            if all(states.get(tid, {}).get("succeeded") for tid in late_ids):
                break
            assert time.monotonic() < deadline, f"late tasks unfinished: {[states.get(t) for t in late_ids]}"
            time.sleep(0.2)
        assert "raised unexpected" not in worker.log_path.read_text(errors="replace")
        troubled = {tid: s for tid, s in states.items() if s["failed"] or s["retry"]}
        assert not troubled, f"tasks failed or ran again with no fault but a closed session: {troubled}"
        record_figures("test_late_publish", {**figures, "late_tasks": LATE_TASKS, "tasks_seen": len(states)})
    finally:
        if call is not None:
            call.stop()
        stack.stop()
