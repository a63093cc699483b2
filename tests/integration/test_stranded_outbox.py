"""A web instance killed between its outbox insert and its lease release (issue 11, item 1).

The instance stored messages in the participant's outbox and died before it acked them in
RabbitMQ and released its poll lease, so Participant.last_seq still says nothing was stored.
With no traffic afterwards the client, polling another instance, must still get them.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest
import requests

from signaling_cli import processes
from tests.faults.harness import kill_tree
from tests.support import rabbit
from tests.support.api import Api
from tests.support.checks import wait_until

pytestmark = pytest.mark.integration


def test_messages_stored_by_a_web_instance_killed_before_its_release_are_delivered(stack, db, tmp_path: Path):
    from messaging import topology
    from models import OutboxMessage, Participant
    from settings import load_settings

    marker = tmp_path / f"paused-{secrets.token_hex(4)}"
    hooked = processes.start_web(
        {**stack.env, "TEST_PAUSE_AFTER_OUTBOX_STORE": str(marker)}, stack.log_dir, name="web-paused-after-store"
    )
    try:
        api = stack.api()
        session = api.create_session()
        alice, bob = api.join(session, "alice"), api.join(session, "bob")
        alice.wait_type("participantJoined", participant_id=bob.participant_id)
        acked = alice.after

        # Bob leaves: alice's final message. Then no more traffic at all.
        assert bob.leave().status_code == 202
        queue = topology.participant_queue(load_settings(stack.env), alice.session_id, alice.participant_id).name
        wait_until(lambda: rabbit.ready_messages(stack.env["RABBITMQ_URL"], queue) == 1, "participantLeft queued")

        # Alice polls through the hooked instance: it stores what it took, then hangs there.
        hooked_member = Api(f"http://127.0.0.1:{hooked.port}")
        url = f"{hooked_member.base}/api/v1/sessions/{alice.session_id}/participants/{alice.participant_id}/messages"

        def poll_through_hooked() -> None:
            try:
                requests.get(url, params={"after": acked, "wait": 10}, headers=alice.headers, timeout=30)
            except requests.RequestException:
                pass  # the instance is killed under it

        poller = threading.Thread(target=poll_through_hooked, daemon=True)
        poller.start()
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the hooked instance never stored anything"
            time.sleep(0.05)
        kill_tree(hooked)
        killed_at = time.monotonic()
        poller.join(30)
        stranded = OutboxMessage.objects(participant_id=alice.participant_id, seq__gt=acked).count()
        assert stranded == 1
        assert Participant.objects(id=alice.participant_id).first().last_seq == acked, "stored, never released"

        # The client comes back once the dead instance's lease has lapsed (while it holds, a poll
        # beside it reads the outbox directly) and moves to the surviving instance with the same
        # `after`; nobody sends anything.
        wait_until(
            lambda: Participant.objects(id=alice.participant_id).first().poll_lease_until < time.time(),
            "the dead instance's poll lease lapsed",
        )
        got = []
        while not any(m["type"] == "participantLeft" for m in got):
            assert time.monotonic() - killed_at < 20, f"stranded messages never delivered; got {got}"
            got += alice.poll(wait=2)
        left = [m for m in got if m["type"] == "participantLeft"]
        assert [m["participant_id"] for m in left] == [bob.participant_id]
        assert [m["seq"] for m in got] == [acked + 1], got
        print(f"\nstranded messages delivered {time.monotonic() - killed_at:.2f} s after the kill")
    finally:
        kill_tree(hooked)
