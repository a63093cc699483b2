"""Webhook events without a broker: nothing without receivers, one delivery per receiver with,
the same id for a re-run, and the delivery's schedule and receiver isolation."""

from __future__ import annotations

import json

import pytest

from media_tasks import webhooks
from media_tasks.dispatch import task_queue
from messaging import webhook_events
from messaging.rerun_identity import publishing_for_task
from settings import Settings


@pytest.fixture
def sent():
    recorded: list[dict] = []

    class Recording:
        def deliver_webhook(self, url: str, event_id: str, body: str, emitted_at: float) -> None:
            recorded.append({"url": url, "event_id": event_id, "body": body})

    webhook_events.use_queue(lambda _settings: Recording())
    yield recorded
    webhook_events.use_queue(task_queue)


def test_emit_and_relay_cost_nothing_without_receivers_and_one_task_per_receiver_with(sent):
    off = Settings(secret_key="k")
    webhook_events.relay(off, "s1", None, {"type": "participantJoined", "participant_id": "p1", "display_name": "a"})
    webhook_events.session_created(off, "s1")
    assert sent == []
    on = Settings(secret_key="k", webhook_urls=("http://a/h", "http://b/h"))
    webhook_events.relay(on, "s1", "p2", {"type": "sdpAnswer", "stream": "publish", "sdp": "", "request_id": "r"})
    assert sent == []  # not an event
    webhook_events.relay(on, "s1", "p2", {"type": "connectionFailed", "stream": "publish"})
    assert [s["url"] for s in sent] == ["http://a/h", "http://b/h"]
    assert sent[0]["body"] == sent[1]["body"] and sent[0]["event_id"] == sent[1]["event_id"]
    event = json.loads(sent[0]["body"])
    assert (event["type"], event["participant_id"], event["data"]) == ("connectionFailed", "p2", {"stream": "publish"})
    assert event["id"] == sent[0]["event_id"] and event["at"].endswith("Z")


def test_a_rerun_task_emits_the_same_event_id(sent):
    on = Settings(secret_key="k", webhook_urls=("http://a/h",))
    for _run in range(2):
        with publishing_for_task("task-1"):
            webhook_events.session_closed(on, "s1", "empty")
    with publishing_for_task("task-2"):
        webhook_events.session_closed(on, "s1", "empty")
    first, rerun, other = (s["event_id"] for s in sent)
    assert first == rerun != other
    assert json.loads(sent[0]["body"])["data"] == {"reason": "empty"}


def test_signature_is_over_the_raw_body():
    body = b'{"id":"x"}'
    header = webhook_events.signature("s", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert webhook_events.verify("s", body, header)
    assert not webhook_events.verify("s", body + b" ", header) and not webhook_events.verify("t", body, header)


def test_retry_delays_double_up_to_the_cap():
    settings = Settings(secret_key="k", webhook_retry_max_delay_s=300)
    assert [webhooks.retry_delay(settings, n) for n in range(10)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert webhooks.retry_delay(settings, 10_000) == 300


def test_a_failed_receiver_rests_then_one_attempt_probes_it_and_others_are_unaffected():
    settings = Settings(secret_key="k", webhook_urls=("http://a", "http://b"), webhook_concurrency=4)
    receivers = webhooks._Receivers()
    assert receivers.take(settings, "http://a", 0.0) == 0
    receivers.give_back("http://a", failed=True, rest_s=4)
    now = receivers.resting_until["http://a"]
    assert receivers.take(settings, "http://a", now - 3.5) == 4  # put back until the rest is over
    assert receivers.take(settings, "http://b", now - 3.5) == 0  # another receiver goes on
    assert receivers.take(settings, "http://a", now) == 0  # the probe
    assert receivers.take(settings, "http://a", now) > 0  # the others wait for its answer
    receivers.give_back("http://a", failed=False, rest_s=1)
    assert receivers.take(settings, "http://a", now) == 0


def test_a_receiver_holds_at_most_its_share_of_threads():
    settings = Settings(secret_key="k", webhook_urls=("http://a", "http://b"), webhook_concurrency=4)
    receivers = webhooks._Receivers()
    assert [receivers.take(settings, "http://a", 0.0) for _ in range(3)] == [0, 0, 1]
    assert receivers.take(settings, "http://b", 0.0) == 0


def test_urls_in_logs_lose_credentials_and_query():
    assert webhooks.shown("https://u:pw@hooks.example:8443/in?token=t") == "https://hooks.example:8443/in"
