"""The reference JS client's backend helpers with bandwidth limits (issue 15), run by Node: createSession
sets a session's defaults, mintToken a participant's own, in the contract's field names."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from models import Participant, Session
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_the_js_client_creates_sessions_and_mints_tokens_with_bandwidth_limits(keyed, keyed_db):
    assert shutil.which("node"), "node runs the reference JS client"
    script = ROOT / "tests" / "js" / "bandwidth_limits.mjs"
    run = subprocess.run(["node", str(script), keyed.base, keyed.api_key], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert Session.bandwidth_of(seen["sessionId"]) == {
        "max_video_send_bandwidth": 1500,
        "min_video_send_bandwidth": 150,
    }
    assert Participant.bandwidth_of(seen["participantId"]) == {
        "max_video_recv_bandwidth": 900,
        "max_video_send_bandwidth": 400,
    }
    assert seen["refused"]["status"] == 422
    assert "min_video_send_bandwidth" in seen["refused"]["errors"]["json"]
