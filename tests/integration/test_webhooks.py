"""Webhooks against a real receiver process: every event of a call arrives signed as documented, a
receiver that fails or is away gets the missed events later under the same ids, a hanging receiver
does not hold up signaling, and without WEBHOOK_URLS nothing is published.

The stack (one signaling worker, the web tier, the webhook worker) runs in a vhost of its own,
with retries at most 1 s apart so that a recovery shows within seconds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from messaging import webhook_events
from signaling_cli import processes
from tests.conftest import ROOT, read_fixture, stack_env, start_stack
from tests.support import rabbit
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")
SECRET = "whsec-" + secrets.token_hex(8)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _doc_verifier():
    """The signature check docs/webhooks.md shows, run as written."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own documentation's example
    return namespace["verify_webhook"]


@dataclass
class Receiver:
    record: Path
    mode_file: Path
    url: str
    proc: processes.ManagedProcess

    def mode(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def requests(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def answered(self) -> list[dict]:
        return [r for r in self.requests() if r["answered"]]

    def delivered(self, session_id: str) -> list[dict]:
        """Events of the session the receiver took (2xx), first copy of each id, in arrival order."""
        seen: dict[str, dict] = {}
        for r in self.answered():
            event = json.loads(r["body"])
            if r["status"] < 300 and event["session_id"] == session_id:
                seen.setdefault(event["id"], event)
        return list(seen.values())

    def wait_delivered(self, session_id: str, types: set[str], count: int = 0, timeout: float = 60) -> list[dict]:
        def done() -> list[dict] | None:
            events = self.delivered(session_id)
            return events if {e["type"] for e in events} >= types and len(events) >= count else None

        return wait_until(done, f"webhook events {sorted(types)} of {session_id}", timeout)


@pytest.fixture(scope="module")
def hooked(run_dir, mongodb_uri, kms_url):
    url, vhost = rabbit.create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    log_dir = run_dir / "logs-webhooks"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    record, mode_file = log_dir / "received.jsonl", log_dir / "receiver-mode"
    mode_file.write_text("ok")
    proc = processes.spawn(
        "webhook-receiver",
        [sys.executable, "-m", "tests.support.webhook_receiver", str(port), str(record), str(mode_file)],
        {},
        log_dir,
        port,
    )
    processes.wait_for_port(port, 30, proc)
    receiver = Receiver(record, mode_file, f"http://127.0.0.1:{port}/hooks?token=abc", proc)
    env = stack_env(
        url,
        mongodb_uri,
        [kms_url],
        SIGNALING_API_KEYS="k1",
        WEBHOOK_URLS=receiver.url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_RETRY_MAX_DELAY_S="1",
        WEBHOOK_RETRY_WINDOW_S="120",
        WEBHOOK_CONCURRENCY="4",
    )
    stack = start_stack(env, log_dir, workers=1)
    webhooks = processes.start_webhook_worker(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-webhooks")
    stack.workers.append(webhooks)  # stopped with the stack
    try:
        yield stack, receiver
    finally:
        receiver.mode("ok")  # frees a held request
        stack.stop()
        proc.stop()
        rabbit.delete_vhost(vhost)


def _close(api, session_id: str) -> None:
    response = api.http.delete(f"{api.base}/api/v1/sessions/{session_id}", headers=api.key_headers)
    assert response.status_code in (200, 202, 204), response.text


def test_every_event_of_a_call_arrives_signed_as_documented(hooked):
    stack, receiver = hooked
    receiver.mode("ok")
    api = stack.api(api_key="k1")
    session = api.create_session()
    sid = session["session_id"]
    alice, bob = api.join(session, "alice"), api.join(session, "bob")
    alice.offer(PUBLISH_SDP)
    bob.wait_type("streamPublished", participant_id=alice.participant_id)
    assert alice.leave().status_code in (200, 202, 204)
    bob.wait_type("participantLeft", participant_id=alice.participant_id)
    _close(api, sid)

    expected = [
        ("sessionCreated", None, {}),
        ("participantJoined", alice.participant_id, {"display_name": "alice", "role": "publisher", "metadata": {}}),
        ("participantJoined", bob.participant_id, {"display_name": "bob", "role": "publisher", "metadata": {}}),
        ("streamPublished", alice.participant_id, {"name": "main", "audio": True, "video": True}),
        ("streamUnpublished", alice.participant_id, {"name": "main", "reason": "left"}),
        ("participantLeft", alice.participant_id, {"reason": "left"}),
        ("sessionClosed", None, {"reason": "closed"}),
    ]
    events = receiver.wait_delivered(sid, {t for t, _, _ in expected}, count=len(expected))
    got = sorted(json.dumps([e["type"], e.get("participant_id"), e["data"]]) for e in events)
    assert got == sorted(json.dumps(list(t)) for t in expected)
    verify = _doc_verifier()
    by_id = {json.loads(r["body"])["id"]: r for r in receiver.answered()}
    for event in events:
        request = by_id[event["id"]]
        raw = request["body"].encode()
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert verify(SECRET, raw, headers["x-signaling-signature"])
        assert webhook_events.verify(SECRET, raw, headers["x-signaling-signature"])
        assert not verify("another secret", raw, headers["x-signaling-signature"])
        assert headers["x-signaling-event-id"] == event["id"] and headers["content-type"] == "application/json"
        assert request["path"] == "/hooks?token=abc"
        about_one = {"participant_id"} if event.get("participant_id") else set()
        assert set(event) == {"id", "type", "session_id", "at", "data"} | about_one
        assert ISO_UTC.match(event["at"]) and datetime.fromisoformat(event["at"]).tzinfo is not None
    # One action's events are emitted in order, which `at` records (docs/webhooks.md: deliveries run in
    # parallel, so arrival order is not guaranteed; receivers order by `at`).
    at = {e["type"]: datetime.fromisoformat(e["at"]) for e in events}
    assert at["streamUnpublished"] <= at["participantLeft"] <= at["sessionClosed"]


def test_a_removal_is_told_with_its_reason_and_the_joiner_s_role_and_metadata(hooked):
    stack, receiver = hooked
    receiver.mode("ok")
    api = stack.api(api_key="k1")
    session = api.create_session()
    sid = session["session_id"]
    minted = api.http.post(
        f"{api.base}/api/v1/sessions/{sid}/tokens",
        json={"role": "subscriber", "display_name": "Sub", "metadata": {"seat": 3}},
        headers=api.key_headers,
    )
    assert minted.status_code == 201, minted.text
    joined = api.http.post(
        f"{api.base}/api/v1/sessions/{sid}/participants", json={"join_token": minted.json()["join_token"]}
    )
    assert joined.status_code == 201, joined.text
    sub_id = joined.json()["participant_id"]
    alice = api.join(session, "alice")
    removed = api.http.delete(f"{api.base}/api/v1/sessions/{sid}/participants/{sub_id}", headers=api.key_headers)
    assert removed.status_code == 202, removed.text
    assert alice.wait_type("participantLeft", participant_id=sub_id)["reason"] == "removed"
    assert alice.leave().status_code == 202

    events = receiver.wait_delivered(sid, {"participantJoined", "participantLeft"}, count=5)
    about = {(e["type"], e.get("participant_id")): e["data"] for e in events}
    assert about[("participantJoined", sub_id)] == {
        "display_name": "Sub",
        "role": "subscriber",
        "metadata": {"seat": 3},
    }
    assert about[("participantLeft", sub_id)] == {"reason": "removed"}
    assert about[("participantLeft", alice.participant_id)] == {"reason": "left"}


def test_recording_started_and_stopped_events(hooked):
    stack, receiver = hooked
    receiver.mode("ok")
    api = stack.api(api_key="k1")
    session = api.create_session()
    sid = session["session_id"]
    alice = api.join(session, "alice")
    alice.offer(PUBLISH_SDP)
    alice.wait_type("streamPublished", participant_id=alice.participant_id)
    recordings = f"{api.base}/api/v1/sessions/{sid}/recordings"
    created = api.http.post(recordings, json={"participant_id": alice.participant_id}, headers=api.key_headers)
    assert created.status_code == 201, created.text
    rid, uri = created.json()["recording_id"], created.json()["uri"]
    alice.wait_type("recordingStarted", recording_id=rid)
    assert api.http.post(f"{recordings}/{rid}/stop", headers=api.key_headers).status_code == 202
    alice.wait_type("recordingStopped", recording_id=rid)
    events = receiver.wait_delivered(sid, {"recordingStarted", "recordingStopped"})
    by_type = {e["type"]: e for e in events}
    recording = {"recording_id": rid, "name": "main", "profile": "webm", "uri": uri}
    assert by_type["recordingStarted"]["participant_id"] == alice.participant_id
    assert by_type["recordingStarted"]["data"] == recording
    assert by_type["recordingStopped"]["participant_id"] == alice.participant_id
    assert by_type["recordingStopped"]["data"] == {**recording, "state": "stopped", "reason": "stopped"}


def test_a_failing_receiver_gets_the_missed_events_later_under_the_same_ids(hooked):
    stack, receiver = hooked
    receiver.mode("fail")
    api = stack.api(api_key="k1")
    session = api.create_session()
    sid = session["session_id"]
    alice = api.join(session, "alice")
    alice.wait_type("participantJoined", participant_id=alice.participant_id)

    def refused_twice() -> set[str]:
        ids = [json.loads(r["body"])["id"] for r in receiver.answered() if r["status"] == 500 and sid in r["body"]]
        return {i for i in ids if ids.count(i) >= 2}

    retried = wait_until(refused_twice, "an event refused twice (retried)")
    # Retries wait on the broker: the webhook queue is bound to Celery's delayed-delivery ladder.
    listed = rabbit._rabbitmqctl(
        "list_bindings",
        "-p",
        rabbit.vhost_of(stack.env["RABBITMQ_URL"]),
        "--no-table-headers",
        "destination_name",
        "routing_key",
    )
    queue = f"{stack.env['SIGNALING_PREFIX']}.webhooks"
    assert f"{queue}\t#.{queue}" in listed.splitlines()
    # Meanwhile the session goes on; nothing reaches the receiver.
    assert alice.leave().status_code in (200, 202, 204)
    receiver.mode("ok")
    expected = {"sessionCreated", "participantJoined", "participantLeft"}
    events = receiver.wait_delivered(sid, expected)
    assert retried <= {e["id"] for e in events}
    # Every copy of an event, refused or taken, is the same bytes.
    bodies: dict[str, set[str]] = {}
    for r in receiver.answered():
        bodies.setdefault(json.loads(r["body"])["id"], set()).add(r["body"])
    assert all(len(b) == 1 for b in bodies.values())
    assert sorted(e["type"] for e in events) == sorted(expected)


def test_a_hanging_receiver_does_not_hold_up_signaling(hooked):
    stack, receiver = hooked
    api = stack.api(api_key="k1")
    receiver.mode("hang")
    first = api.create_session()
    wait_until(lambda: [r for r in receiver.requests() if not r["answered"]], "a request held by the receiver")
    answered_before = len(receiver.answered())
    # While the receiver holds that request and answers nothing, calls go on: joins, offers, answers.
    members = []
    for name in ("carol", "dave", "erin"):
        session = api.create_session()
        member = api.join(session, name)
        request_id = member.offer(PUBLISH_SDP)
        member.wait_type("sdpAnswer", request_id=request_id)
        members.append(member)
    assert len(receiver.answered()) == answered_before  # nothing answered all along
    assert receiver.mode_file.read_text() == "hang"
    # Let go: every event of those sessions arrives after all.
    receiver.mode("ok")
    for member in members:
        wait_until(
            lambda m=member: (
                {"sessionCreated", "participantJoined", "streamPublished"}
                <= {e["type"] for e in receiver.delivered(m.session_id)}
            ),
            "events held while the receiver hung",
            timeout=60,
        )
    assert "sessionCreated" in {e["type"] for e in receiver.delivered(first["session_id"])}


def test_without_webhook_urls_nothing_is_published(stack, api):
    # A call on the shared stack (WEBHOOK_URLS unset): the webhook queue, which sending would
    # declare, does not even exist.
    session = api.create_session()
    alice = api.join(session, "alice")
    alice.offer(PUBLISH_SDP)
    alice.wait_type("sdpAnswer")
    queue = f"{stack.env['SIGNALING_PREFIX']}.webhooks"
    with pytest.raises(Exception, match="NOT_FOUND"):
        rabbit.ready_messages(stack.env["RABBITMQ_URL"], queue)
