"""The reference JS client (signaling_web/demo/static/signaling-client.js) with recordings, run by Node:
its recording helpers reach the routes, and it tracks `recordingStarted`/`recordingStopped` in
`client.recordings`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, read_fixture

pytestmark = pytest.mark.integration

PUBLISH_SDP = read_fixture("chromium-publish.sdp")


def test_the_js_client_records_and_tracks_recordings(keyed, keyed_stack):
    assert shutil.which("node"), "node runs the reference JS client"
    session = keyed.create_session()
    alice = keyed.join(session, "alice")
    alice.offer(PUBLISH_SDP)
    alice.wait_type("streamPublished", participant_id=alice.participant_id)
    script = ROOT / "tests" / "js" / "recording_events.mjs"
    args = [keyed.base, keyed.api_key, session["session_id"], session["join_token"], alice.participant_id]
    run = subprocess.run(["node", str(script), *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    created = seen["created"]
    assert created["state"] == "starting" and created["participant_id"] == alice.participant_id
    rid = created["recording_id"]
    assert seen["recordingAfterStart"] == {
        "recording_id": rid,
        "participant_id": alice.participant_id,
        "name": "main",
        "state": "recording",
        "reason": None,
    }
    assert seen["recordingAfterStop"]["state"] == "stopped" and seen["recordingAfterStop"]["reason"] == "stopped"
    assert [r["recording_id"] for r in seen["listed"]["recordings"]] == [rid]
    assert seen["refused"]["status"] == 422 and "profile" in seen["refused"]["errors"]["json"]
    assert {"recordingStarted", "recordingStopped"} <= set(seen["seen"])
