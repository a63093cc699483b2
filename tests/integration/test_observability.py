"""What operators watch: Prometheus metrics of web and workers, JSON logs, offline API docs."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.conftest import read_fixture
from tests.support.api import Api

pytestmark = pytest.mark.integration


def metric_value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_web_metrics_count_requests_and_read_state(api):
    # Differences, not totals: the stack is shared, and earlier tests leave sessions behind.
    def scrape() -> tuple[float, float, float]:
        text = requests.get(f"{api.base}/metrics").text
        created = metric_value(
            text, "signaling_http_requests_total", route="/api/v1/sessions", method="POST", status="201"
        )
        opened = metric_value(text, "signaling_sessions", state="open")
        joined = metric_value(text, "signaling_participants", state="joined")
        return created or 0.0, opened or 0.0, joined or 0.0

    before = scrape()
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.poll(wait=0)
    text = requests.get(f"{api.base}/metrics").text
    assert scrape() == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert metric_value(text, "signaling_long_polls_waiting") == 0
    assert metric_value(text, "signaling_kms_up") == 1
    alice.leave()
    assert scrape()[1:] == (before[1] + 1, before[2])  # left: no longer counted as joined


def test_worker_metrics_count_tasks_and_kms_calls(api, stack):
    def scrape() -> tuple[float, float, float]:
        texts = [requests.get(f"http://127.0.0.1:{w.port}/metrics").text for w in stack.workers]

        def total(name: str, **labels: str) -> float:
            return sum(metric_value(t, name, **labels) or 0 for t in texts)

        return (
            total("signaling_tasks_total", task="media.process_offer", outcome="success"),
            total("signaling_kms_request_seconds_count", method="invoke", operation="processOffer"),
            # The dispatch delay, from the web tier's enqueued_at header to the task's start.
            total("signaling_task_dispatch_seconds_count", task="media.process_offer"),
        )

    session = api.create_session()
    alice = api.join(session, "alice")
    before = scrape()
    alice.wait_type("sdpAnswer", request_id=alice.offer(read_fixture("chromium-publish.sdp")))
    # One offer: one task, one processOffer on the media server, one dispatch measured. The task
    # counts once it has returned, a moment after the answer it published.
    deadline = time.monotonic() + 10
    while (after := scrape()) != (before[0] + 1, before[1] + 1, before[2] + 1):
        assert time.monotonic() < deadline, f"worker metrics went from {before} to {after}"
        time.sleep(0.1)


def test_worker_logs_are_json_lines_with_session_and_participant(api, stack):
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.wait_type("sdpAnswer", request_id=alice.offer(read_fixture("chromium-publish.sdp")))
    entries = [
        json.loads(line) for w in stack.workers for line in w.log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert entries, "workers write JSON log lines"
    mine = [e for e in entries if e["participant_id"] == alice.participant_id]
    assert mine and all(e["session_id"] == session["session_id"] for e in mine)
    assert not [e for e in entries if alice.token in e["message"]], "tokens never reach the logs"


def test_swagger_ui_is_served_without_a_cdn(api):
    page = requests.get(f"{api.base}/api/v1/docs").text
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    asset = requests.get(f"{api.base}/api/v1/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_a_long_poll_waiting_counts_in_the_gauge_until_it_answers(api):
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.wait_type("participantJoined", participant_id=alice.participant_id)

    def waiting() -> float | None:
        return metric_value(requests.get(f"{api.base}/metrics", timeout=10).text, "signaling_long_polls_waiting")

    assert waiting() == 0
    answered: list[dict] = []
    poll = threading.Thread(target=lambda: answered.extend(alice.poll(wait=25)), daemon=True)
    poll.start()
    deadline = time.monotonic() + 20
    while waiting() != 1:
        assert time.monotonic() < deadline and poll.is_alive(), "the waiting poll never showed in the gauge"
        time.sleep(0.1)
    bob = Api(api.base).join(session, "bob")  # alice's poll answers with bob's arrival
    poll.join(30)
    assert not poll.is_alive()
    assert any(m["type"] == "participantJoined" and m["participant_id"] == bob.participant_id for m in answered)
    assert waiting() == 0
