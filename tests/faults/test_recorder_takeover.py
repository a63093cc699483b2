"""`kill -9` of the worker that created a recorder: its events still count.

The recorder's events go to the KMS session of the worker that created it. That worker dies; another
takes its KMS session over and listens to the recorders recorded under it, as to its endpoints. The
emulator then raises `Error` on the recorder: the recording fails with reason `error`, and everyone
is told. (A recorder's `Error` event is also what any recorder failure looks like.)
"""

from __future__ import annotations

import time

import pytest

from models import KmsSession, Recording
from tests.conftest import read_fixture
from tests.faults.harness import FaultStack, kill_tree
from tests.support.api import Api
from tests.support.emulator_control import raise_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "recorder-takeover-key"
PUBLISH_SDP = read_fixture("chromium-publish.sdp")


def test_a_recorder_error_after_its_worker_died_fails_the_recording(fault_dir, vhost_url):
    stack = FaultStack(
        fault_dir,
        vhost_url,
        kms_count=1,
        worker_count=2,
        web_count=1,
        kms_args=("--test-control",),
        extra_env={"SIGNALING_API_KEYS": API_KEY},
    ).start()
    try:
        stack.connect_db()
        api = Api(stack.base_urls[0], API_KEY)
        session = api.create_session()
        sid = session["session_id"]
        alice, bob = api.join(session, "alice"), api.join(session, "bob")
        alice.offer(PUBLISH_SDP)
        bob.wait_type("streamPublished", participant_id=alice.participant_id)
        url = f"{api.base}/api/v1/sessions/{sid}/recordings"
        created = api.http.post(url, json={"participant_id": alice.participant_id}, headers=api.key_headers)
        rid = created.json()["recording_id"]
        bob.wait_type("recordingStarted", recording_id=rid)

        recording = Recording.find(rid)
        held = recording.kms_session
        victim_owner = KmsSession.objects(id=held).first().owner
        victim = next(w for w in stack.workers if w.pid == int(victim_owner.split(":")[1]))
        kill_tree(victim)
        deadline = time.monotonic() + 30
        while KmsSession.objects(id=held).first().owner == victim_owner:
            assert time.monotonic() < deadline, "nobody took the dead worker's KMS session over"
            time.sleep(0.05)

        error = {"description": "disk full", "errorCode": 1, "type": "RECORDER"}
        assert raise_event(stack.kms_urls[0], recording.kurento.id, "Error", error) == 1
        assert bob.wait_type("recordingStopped", recording_id=rid, timeout=30)["reason"] == "error"
        ended = api.http.get(f"{url}/{rid}", headers=api.key_headers).json()
        assert (ended["state"], ended["reason"]) == ("failed", "error")
    finally:
        stack.stop()
