"""Restart of the MongoDB stand-in (kill -9, then start again on the same port and data file).

While it is away, requests that need the database answer 503 in the documented error shape
within the driver's server-selection timeout (5 s), not a hang and not a stack trace, and
/ready says 503. When it is back, the service recovers by itself: nothing is restarted.

No chat post is in flight when the database goes away (a chat task never touches MongoDB, and
the web tier refuses posts with 503 before enqueueing anything), and a poll that could not store
what it took from the queue leaves it unacknowledged, to be redelivered with its message id: so
no message may arrive twice, and the test asserts none does.

Every heartbeat and poll time looks old after the outage only because nobody could write it:
the workers must not take the KMS sessions of live workers over, nor remove participants as
silent. The participant timeout here is shorter than the outage, so that would show.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.callscript import ERROR_KEYS, PUBLISH_SDP, Call
from tests.faults.harness import FaultStack, kill_tree, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTICIPANT_TIMEOUT_S = 4  # the outage lasts longer (5 s of probes, then the restart)


def _probe(method: str, url: str, **kwargs) -> tuple[int, float, dict | None]:
    began = time.monotonic()
    try:
        response = requests.request(method, url, timeout=30, **kwargs)
    except requests.RequestException as exc:
        return -1, time.monotonic() - began, {"exception": repr(exc)}
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return response.status_code, time.monotonic() - began, body


def test_mongodb_restart_gives_503s_then_recovers_by_itself(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=2,
        worker_count=2,
        web_count=2,
        extra_env={"PARTICIPANT_TIMEOUT_S": str(PARTICIPANT_TIMEOUT_S)},
    ).start()
    call = None
    try:
        stack.connect_db()
        call = Call(stack.base_urls, sessions=2, per_session=3)
        call.publish_all()
        call.wait_published()
        call.chat_round(2)
        call.wait_chat(30)

        kill_tree(stack.mongo)
        killed_at = time.monotonic()
        alice = call.clients[0]
        base = stack.base_urls[1]
        session_path = f"{base}/api/v1/sessions/{alice.sid}"
        probes = {
            "ready": ("GET", f"{base}/ready", {}),
            "create_session": ("POST", f"{base}/api/v1/sessions", {"json": {"name": "during-outage"}}),
            "chat": ("POST", f"{session_path}/messages", {"json": {"payload": {"probe": 1}}, "headers": alice.auth}),
            "offer": (
                "POST",
                f"{session_path}/participants/{alice.participant_id}/offers",
                {"json": {"stream": "publish", "sdp": PUBLISH_SDP}, "headers": alice.auth},
            ),
            "poll": (
                "GET",
                f"{session_path}/participants/{alice.participant_id}/messages",
                {"params": {"after": alice.after, "wait": 1}, "headers": alice.auth},
            ),
            "get_session": ("GET", session_path, {"headers": alice.auth}),
        }
        with ThreadPoolExecutor(len(probes)) as pool:
            answers = dict(zip(probes, pool.map(lambda p: _probe(p[0], p[1], **p[2]), probes.values()), strict=True))
        outage_answers = {name: (status, round(took, 2)) for name, (status, took, _b) in answers.items()}
        for name, (status, took, body) in answers.items():
            assert status == 503, f"{name} during the outage: {status} {body}"
            assert took < 15, f"{name} took {took:.1f} s"
            if name != "ready":
                assert set(body) == ERROR_KEYS and body["code"] == 503, body
        downtime = time.monotonic() - killed_at

        restarted_at = time.monotonic()
        stack.start_mongo()
        ready_after = stack.wait_ready(60)
        # The first request through each instance that needs the database again.
        first_ok = []
        for b in stack.base_urls:
            began = time.monotonic()
            while True:
                response = requests.get(f"{b}/api/v1/sessions/{alice.sid}", headers=alice.auth, timeout=30)
                if response.status_code == 200:
                    break
                assert time.monotonic() - began < 60, response.text
                time.sleep(0.2)
            first_ok.append(time.monotonic() - restarted_at)

        call.chat_round(2)
        call.subscribe_all()
        call.wait_answers(60)
        # KMS events of the endpoints created after the restart reach their participants too.
        call.wait_gathered(30)
        call.wait_chat(60)
        time.sleep(1.0)
        assert not [m for c in call.clients for m in c.messages("participantLeft")], "someone was removed"
        assert "took over KMS session" not in stack.worker_logs(), "a live worker's KMS session was taken over"
        delivery = call.check_delivery()
        assert not call.duplicated_chats(), call.duplicated_chats()
        state = call.check_state(stack.kms_urls)
        record_figures(
            "mongo_restart",
            {
                "outage_s": round(downtime, 2),
                "answers_during_outage_status_s": outage_answers,
                "ready_200_after_restart_s": round(ready_after, 2),
                "first_db_request_ok_after_restart_s": round(max(first_ok), 2),
                "client_5xx_answers_seen": sum(
                    n for c in call.clients for s, n in c.stats.statuses.items() if s >= 500
                ),
                **delivery,
                **state,
            },
        )
    finally:
        if call:
            call.stop()
        stack.stop()
