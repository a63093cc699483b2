"""The media server of a recorded call dies: the recording fails with reason mediaServerLost.

`kill -9` of the only emulator while a publisher is recorded: the health monitor moves the session
to media_lost, everyone gets `mediaServerLost` and `recordingStopped {reason: "mediaServerLost"}`,
and the recording reads `failed` (its file was never finished) with no recorder left in the record.
"""

from __future__ import annotations

import pytest

from models import Recording
from tests.conftest import read_fixture
from tests.faults.harness import FaultStack
from tests.support.api import Api
from tests.support.checks import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "recording-loss-key"
PUBLISH_SDP = read_fixture("chromium-publish.sdp")


def test_losing_the_media_server_fails_the_recording(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir, vhost_url, kms_count=1, worker_count=1, web_count=1, extra_env={"SIGNALING_API_KEYS": API_KEY}
    ).start()
    try:
        api = Api(stack.base_urls[0], API_KEY)
        session = api.create_session()
        sid = session["session_id"]
        alice, bob = api.join(session, "alice"), api.join(session, "bob")
        alice.offer(PUBLISH_SDP)
        bob.wait_type("streamPublished", participant_id=alice.participant_id)
        url = f"{api.base}/api/v1/sessions/{sid}/recordings"
        created = api.http.post(url, json={"participant_id": alice.participant_id}, headers=api.key_headers)
        assert created.status_code == 201, created.text
        rid = created.json()["recording_id"]
        bob.wait_type("recordingStarted", recording_id=rid)

        stack.kill_kms(0)
        bob.wait_type("mediaServerLost", timeout=30)
        assert bob.wait_type("recordingStopped", recording_id=rid)["reason"] == "mediaServerLost"
        alice.wait_type("recordingStopped", recording_id=rid)
        ended = api.http.get(f"{url}/{rid}", headers=api.key_headers).json()
        assert (ended["state"], ended["reason"]) == ("failed", "mediaServerLost") and ended["stopped_at"]
        stack.connect_db()
        wait_until(lambda: Recording.find(rid).kurento is None, "no recorder left in the record")
    finally:
        stack.stop()
