"""Flower, started by the launcher `signaling run` uses, shows the service's tasks as operators
should see them: named `media.*`, with session and participant ids, never an SDP or a token;
and queue lengths when the broker's management API is there."""

from __future__ import annotations

import time

import pytest
import requests

from signaling_cli import processes
from signaling_cli.rabbitmq_management import answers, beside_broker
from tests.conftest import read_fixture

pytestmark = pytest.mark.integration

SDP = read_fixture("chromium-publish.sdp")


@pytest.fixture(scope="module")
def flower(stack):
    # Flower 2 serves its JSON API only with authentication, or with this switch.
    env = {**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    proc = processes.start_flower(
        env, stack.log_dir, port=processes.free_port(), name=f"{stack.env['SIGNALING_PREFIX']}-flower"
    )
    try:
        processes.wait_for_port(proc.port, 60, proc)
        yield proc
    finally:
        proc.stop()


def flower_tasks(flower, name: str) -> dict:
    response = requests.get(f"http://127.0.0.1:{flower.port}/api/tasks", params={"taskname": name}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_flower_lists_tasks_by_name_with_ids_and_without_sdp(flower, api):
    session = api.create_session()
    alice = api.join(session, "alice")
    # Flower turns the workers' task events on when it starts; offers made before that are not
    # seen, so offer again until one is.
    deadline = time.monotonic() + 60
    shown = None
    while shown is None:
        assert time.monotonic() < deadline, f"Flower never listed a media.process_offer; see {flower.log_path}"
        alice.offer(SDP)
        time.sleep(1.0)
        shown = next(
            (
                task
                for task in flower_tasks(flower, "media.process_offer").values()
                if alice.participant_id in (task.get("kwargs") or "")
            ),
            None,
        )
    kwargs = shown["kwargs"]
    assert shown["name"] == "media.process_offer"
    assert f"'session_id': '{session['session_id']}'" in kwargs
    assert f"'participant_id': '{alice.participant_id}'" in kwargs
    assert "'sdp': '<hidden>'" in kwargs and "v=0" not in kwargs and "a=fingerprint" not in kwargs
    assert alice.token not in str(shown) and session["join_token"] not in str(shown)


def test_flower_has_queue_lengths_where_the_management_api_answers(flower, stack):
    available = answers(beside_broker(stack.env["RABBITMQ_URL"]))
    assert bool(flower.extra["broker_api"]) == available
    # `make test` enables the plugin (scripts/ensure_rabbitmq.sh, as root): without it Flower
    # shows no queue lengths, which is a failure, not a reason to skip.
    assert available, (
        "the RabbitMQ management API does not answer: run `rabbitmq-plugins enable "
        "rabbitmq_management` as root, or `make test` as root, which does it"
    )
    shards = {f"{stack.env['SIGNALING_PREFIX']}.shard.{i}" for i in range(int(stack.env["SHARDS"]))}
    deadline = time.monotonic() + 30
    while True:
        response = requests.get(f"http://127.0.0.1:{flower.port}/api/queues/length", timeout=10)
        listed = {queue["name"] for queue in response.json().get("active_queues", [])} if response.ok else set()
        if shards <= listed:
            break
        assert time.monotonic() < deadline, f"Flower's queue lengths: {response.status_code} {response.text[:300]}"
        time.sleep(1.0)
