"""signaling_sdk/README.md's backend, run as written against the real service: its webhook route,
which checks signatures with the SDK, takes the events the service really sends and refuses a
request that is not the service's; its ticket route mints a token a frontend joins with.

The stack (one signaling worker, the web tier, the webhook worker, with API keys and WEBHOOK_URLS
pointing at the example) runs in a vhost of its own; the example is served in this process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from unittest import mock

import pytest
import requests
from werkzeug.serving import make_server

from signaling_cli import processes
from signaling_sdk import signature
from tests.conftest import ROOT, stack_env, start_stack
from tests.support import rabbit
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration

SECRET = "whsec-" + secrets.token_hex(8)


def readme_backend(env: dict[str, str]) -> dict:
    """The README's example module, executed with its environment variables set: its namespace."""
    text = (ROOT / "signaling_sdk" / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    code = "\n" * text[: block.start(1)].count("\n") + block.group(1)  # tracebacks name README's lines
    namespace: dict = {"__name__": "readme_backend"}
    with mock.patch.dict(os.environ, env):
        exec(compile(code, "signaling_sdk/README.md", "exec"), namespace)  # noqa: S102 - our own example
    return namespace


@pytest.fixture(scope="module")
def backend(run_dir, mongodb_uri, kms_url):
    # The example's server first: its port goes into the service's WEBHOOK_URLS.
    holder: dict = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
    hook_url = f"http://127.0.0.1:{server.server_port}/hooks/signaling"
    url, vhost = rabbit.create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    log_dir = run_dir / "logs-sdk-webhooks"
    env = stack_env(
        url,
        mongodb_uri,
        [kms_url],
        SIGNALING_API_KEYS="k-backend",
        WEBHOOK_URLS=hook_url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_RETRY_MAX_DELAY_S="1",
        WEBHOOK_RETRY_WINDOW_S="120",
    )
    stack = start_stack(env, log_dir, workers=1)
    try:
        stack.workers.append(processes.start_webhook_worker(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-webhooks"))
        example = readme_backend(
            {"SIGNALING_URL": stack.base_url, "SIGNALING_API_KEY": "k-backend", "WEBHOOK_SECRET": SECRET}
        )
        holder["app"] = example["app"]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield stack, example, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        stack.stop()
        rabbit.delete_vhost(vhost)


def events_of(example: dict, session_id: str) -> dict[str, object]:
    """The events the example took for a session, by type."""
    return {e.type: e for e in list(example["events"].values()) if e.session_id == session_id}


def test_the_example_takes_the_services_signed_events(backend):
    stack, example, base = backend
    created = requests.post(f"{base}/rooms", json={"name": "standup"}, timeout=30)
    assert created.status_code == 201, created.text
    room = created.json()["room"]
    sdk = example["signaling"]
    assert sdk.get_session(room).name == "standup"

    wait_until(lambda: "sessionCreated" in events_of(example, room), "sessionCreated verified by the example")
    sdk.close_session(room)
    closed = wait_until(lambda: events_of(example, room).get("sessionClosed"), "sessionClosed verified")
    assert closed.data == {"reason": "closed"} and closed.at.tzinfo is not None


def test_the_example_refuses_what_the_service_did_not_sign(backend):
    _stack, example, base = backend
    body = json.dumps(
        {"id": "forged", "type": "sessionClosed", "session_id": "s1", "at": "2026-01-01T00:00:00.000Z", "data": {}}
    ).encode()
    hook = f"{base}/hooks/signaling"
    headers = {"Content-Type": "application/json"}
    for forged in (None, signature("not the secret", body), signature(SECRET, body + b" ")):
        sent = headers | ({"X-Signaling-Signature": forged} if forged else {})
        assert requests.post(hook, data=body, headers=sent, timeout=10).status_code == 401
    assert "forged" not in example["events"]
    signed = headers | {"X-Signaling-Signature": signature(SECRET, body)}
    assert requests.post(hook, data=body, headers=signed, timeout=10).status_code == 204
    assert example["events"]["forged"].session_id == "s1"


def test_a_ticket_from_the_example_joins_as_that_user(backend):
    """Awaits i14-roles (POST /sessions/{sid}/tokens)."""
    stack, example, base = backend
    room = requests.post(f"{base}/rooms", json={"name": "tickets"}, timeout=30).json()["room"]
    ticket = requests.post(f"{base}/rooms/{room}/tickets", json={"user": "alice"}, timeout=30)
    assert ticket.status_code == 200, ticket.text
    joined = requests.post(
        f"{stack.base_url}/api/v1/sessions/{room}/participants",
        json={"display_name": "someone else", "join_token": ticket.json()["join_token"]},
        timeout=30,
    )
    assert joined.status_code == 201, joined.text
    event = wait_until(lambda: events_of(example, room).get("participantJoined"), "participantJoined verified")
    assert event.participant_id == joined.json()["participant_id"]
    assert event.data["display_name"] == "alice"
