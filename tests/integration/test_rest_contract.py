"""The REST contract end to end: real web (gunicorn+gevent), real workers, RabbitMQ, nx-27017."""

from __future__ import annotations

import os

import pytest
import requests

from signaling_cli import processes
from tests.conftest import stack_env
from tests.support.checks import wait_until
from tests.support.rabbit import create_vhost, delete_vhost

pytestmark = pytest.mark.integration


def test_health_and_ready(stack):
    assert requests.get(f"{stack.base_url}/health").json() == {"status": "ok"}
    ready = requests.get(f"{stack.base_url}/ready").json()
    assert ready["checks"] == {"broker": True, "database": True, "workers": True}


def test_ready_is_503_until_a_worker_answers(run_dir, mongodb_uri, kms_url):
    # A vhost of its own: workers answer control pings per vhost, and no worker consumes this one yet.
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    assert vhost is not None, "needs rabbitmqctl for a vhost without workers"
    env = stack_env(url, mongodb_uri, [kms_url])
    log_dir = run_dir / "logs-ready"
    web = processes.start_web(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-web")
    worker = None
    try:
        base = f"http://127.0.0.1:{web.port}"
        ready = requests.get(f"{base}/ready", timeout=30)
        assert ready.status_code == 503, ready.text
        assert ready.json() == {"status": "unavailable", "checks": {"broker": True, "database": True, "workers": False}}
        assert requests.get(f"{base}/health", timeout=30).status_code == 200  # alive, just not ready
        worker = processes.start_worker(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-worker", concurrency=1)
        answer = wait_until(
            lambda: (r := requests.get(f"{base}/ready", timeout=30)).status_code == 200 and r,
            "ready once the worker answers",
            timeout=60,
        )
        assert answer.json() == {"status": "ready", "checks": {"broker": True, "database": True, "workers": True}}
    finally:
        for proc in (worker, web):
            if proc is not None:
                proc.stop()
        delete_vhost(vhost)


def test_openapi_document_lists_every_route(stack):
    spec = requests.get(f"{stack.base_url}/api/v1/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/participants",
        "/api/v1/sessions/{session_id}/participants/{participant_id}",
        "/api/v1/sessions/{session_id}/participants/{participant_id}/rejoin",
        "/api/v1/sessions/{session_id}/participants/{participant_id}/offers",
        "/api/v1/sessions/{session_id}/participants/{participant_id}/candidates",
        "/api/v1/sessions/{session_id}/participants/{participant_id}/messages",
        "/api/v1/sessions/{session_id}/messages",
    } <= paths


def test_create_join_and_broadcast(api):
    session = api.create_session(name="standup", max_participants=4)
    assert session["state"] == "open" and session["name"] == "standup"
    alice = api.join(session, "alice")
    bob = api.join(session, "bob")
    assert alice.wait_type("participantJoined", participant_id=bob.participant_id)["display_name"] == "bob"
    assert alice.send({"text": "hello"}).status_code == 202
    got = bob.wait_type("message")
    assert got["from"] == alice.participant_id and got["payload"] == {"text": "hello"}
    detail = requests.get(f"{api.base}/api/v1/sessions/{session['session_id']}", headers=bob.headers).json()
    assert {p["display_name"] for p in detail["participants"]} == {"alice", "bob"}
