"""A rolling deploy under load: SIGTERM of a web instance, then of a worker, each replaced by a
new process (what Kubernetes does to a Deployment's pods), while every client chats, polls and
subscribes.

The web instance (gunicorn) stops accepting, lets the requests it holds finish (waiting long
polls are answered at once, with what they have: messaging.mailbox.Mailbox.drain) and exits;
clients whose connection it closed retry on the other instance (same Idempotency-Key, polls
with `after`); a waiting poll used to be cut when the graceful timeout ran out. The worker does
Celery's warm shutdown: it stops fetching, finishes the tasks it runs and exits; what it had fetched and not
started goes back to the queue unacknowledged (acks_late) and runs on another worker. Both exit
by themselves, with status 0; nothing acknowledged is lost and no offer is answered twice.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from signaling_cli import processes
from tests.faults.callscript import Call
from tests.faults.harness import FaultStack, in_flight, record_figures
from tests.faults.probe import probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _terminate(proc: processes.ManagedProcess, timeout: float = 60.0) -> tuple[float, int]:
    """SIGTERM, then waits for the process to exit by itself: (seconds it took, exit status)."""
    began = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    status = proc.popen.wait(timeout)
    return time.monotonic() - began, status


def test_sigterm_of_a_web_and_a_worker_under_load_loses_nothing(fault_dir, vhost_url):
    stack = FaultStack(fault_dir, vhost_url, kms_count=1, worker_count=2, web_count=2).start()
    call = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(1)
        call.wait_chat(30)

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

        # A participant with nothing coming, long-polling through the instance about to stop.
        web0 = stack.base_urls[0]
        idle_session = requests.post(f"{web0}/api/v1/sessions", json={"name": "idle"}, timeout=30).json()
        idle = requests.post(
            f"{web0}/api/v1/sessions/{idle_session['session_id']}/participants",
            json={"display_name": "idle", "join_token": idle_session["join_token"]},
            timeout=30,
        ).json()
        idle_poll = (
            f"{web0}/api/v1/sessions/{idle_session['session_id']}/participants/{idle['participant_id']}/messages"
        )
        idle_auth = {"Authorization": f"Bearer {idle['token']}"}
        seen = requests.get(idle_poll, params={"after": 0, "wait": 0}, headers=idle_auth, timeout=30).json()
        idle_after = max([m["seq"] for m in seen["messages"]], default=0)
        idle_answer: list[tuple] = []
        idle_poller = threading.Thread(
            target=lambda: idle_answer.append(
                probe("GET", idle_poll, params={"after": idle_after, "wait": 20}, headers=idle_auth)
            ),
            daemon=True,
        )
        idle_poller.start()
        time.sleep(1.0)  # it is waiting

        # The web instance first; its successor listens on the same address.
        old_web = stack.webs[0]
        web_exit_s, web_status = _terminate(old_web)
        idle_poller.join(30)
        replaced_at = time.monotonic()
        stack.webs[0] = processes.start_web(stack.env, stack.log_dir, port=old_web.port, name=f"{old_web.name}-next")
        web_ready_s = stack.wait_ready(60, bases=[stack.base_urls[0]])
        web_replaced_s = time.monotonic() - replaced_at

        # Then a worker, with offers in flight (every client subscribes to every other).
        subscriber = threading.Thread(target=call.subscribe_all, daemon=True)
        subscriber.start()
        time.sleep(0.3)
        old_worker = stack.workers[0]
        held = in_flight(old_worker.log_path)
        worker_exit_s, worker_status = _terminate(old_worker)
        stack.replace_dead_workers()
        subscriber.join(120)
        time.sleep(1.0)
        stop_load.set()
        loader.join(120)
        assert not load_errors, load_errors
        call.wait_answers(90)
        call.wait_chat(90)

        assert web_status == 0, f"gunicorn exited with {web_status} after SIGTERM"
        # The waiting poll was answered (empty) at SIGTERM, not cut when the graceful timeout ran out.
        (idle_status, idle_took, idle_body) = idle_answer[0]
        assert idle_status == 200 and idle_body["messages"] == [], (idle_status, idle_body)
        assert worker_status == 0, f"the worker exited with {worker_status} after SIGTERM"
        assert not in_flight(old_worker.log_path), "the worker exited with tasks unfinished"
        assert "Warm shutdown" in old_worker.log_path.read_text(errors="replace")
        delivery = call.check_delivery()
        duplicated, rekeyed = call.duplicated_chats(), call.rekeyed_chats()
        assert duplicated <= rekeyed, f"duplicates not explained by a re-keyed post: {sorted(duplicated - rekeyed)}"
        state = call.check_state(stack.kms_urls, other_sessions=(idle_session["session_id"],))
        statuses = sum((c.stats.statuses for c in call.clients), start=type(call.clients[0].stats.statuses)())
        record_figures(
            "rolling_restart",
            {
                "web_exit_after_sigterm_s": round(web_exit_s, 2),
                "waiting_poll_answered_after_s": round(idle_took, 2),
                "web_successor_ready_s": round(web_ready_s, 2),
                "web_replaced_s": round(web_replaced_s, 2),
                "worker_tasks_held_at_sigterm": len(held),
                "worker_exit_after_sigterm_s": round(worker_exit_s, 2),
                "client_answers_by_status": dict(statuses),
                "client_connection_errors": sum(c.stats.connection_errors for c in call.clients),
                "slowest_request_s": round(max(c.stats.slowest_request_s for c in call.clients), 2),
                "chat_messages_duplicated": len(duplicated),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
