"""A real recording: an aiortc publisher is recorded for about 5 s by the emulator in media mode, and
the file it wrote decodes (PyAV) to video frames lasting as long as the recording ran (±1 s).

Also measured, not asserted: the emulator's CPU while the publisher only sends, then while it is
recorded (the recorder re-encodes what it receives: VP8 and Opus into WebM).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import av
import psutil
import pytest

from tests.conftest import stack_env, start_stack
from tests.integration.test_media_call import LoopThread
from tests.support.api import Api
from tests.support.emulator import EmulatorProcess
from tests.support.rabbit import create_vhost, delete_vhost
from tests.support.webrtc_peer import WebRtcParticipant

pytestmark = [pytest.mark.integration, pytest.mark.media]

KEY = "rec-key"
RECORDED_S = 5.0
VIDEO = {"width": 320, "height": 240, "fps": 15}


@pytest.fixture(scope="module")
def recording_stack(run_dir, mongodb_uri):
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    log_dir = run_dir / "logs-recording"
    files = run_dir / "recordings"
    kms = EmulatorProcess(log_dir, "media", name="kms-recording").start()
    try:
        env = stack_env(url, mongodb_uri, [kms.url], SIGNALING_API_KEYS=KEY, RECORDINGS_URI=f"file://{files}")
        stack = start_stack(env, log_dir)
    except Exception:
        kms.stop()
        delete_vhost(vhost)
        raise
    try:
        yield stack, kms, files
    finally:
        stack.stop()
        kms.stop()
        delete_vhost(vhost)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def decoded_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(video frames decoded, seconds from the first frame's pts to the end of the last, frame size)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = []
        size = (0, 0)
        for frame in container.decode(stream):
            pts.append(frame.pts)
            size = (frame.width, frame.height)
    assert pts, f"no video frame decoded from {path}"
    step = (pts[-1] - pts[0]) / max(1, len(pts) - 1)
    return len(pts), float((pts[-1] - pts[0] + step) * stream.time_base), size


@pytest.mark.timeout(180)
def test_a_recorded_publisher_decodes_with_the_expected_duration(recording_stack):
    stack, kms, files = recording_stack
    api = Api(stack.base_url, KEY)
    session = api.create_session(name="recorded")
    sid = session["session_id"]
    watcher = api.join(session, "watcher")
    loop = LoopThread()
    emulator = psutil.Process(kms.process.popen.pid)

    async def publish() -> WebRtcParticipant:
        alice = await WebRtcParticipant.join(stack.base_url, session, "alice", audio=True, **VIDEO)
        link = await alice.publish()
        await asyncio.wait_for(link.connected.wait(), 30)
        return alice

    alice = loop.run(publish(), timeout=60)
    try:
        watcher.wait_type("streamPublished", participant_id=alice.participant_id)
        # The baseline: the emulator receives and decodes the publication, nothing more.
        before, began = cpu_seconds(emulator), time.monotonic()
        time.sleep(RECORDED_S)
        idle_cpu = (cpu_seconds(emulator) - before) / (time.monotonic() - began)

        url = f"{api.base}/api/v1/sessions/{sid}/recordings"
        created = api.http.post(url, json={"participant_id": alice.participant_id}, headers=api.key_headers)
        assert created.status_code == 201, created.text
        rid, uri = created.json()["recording_id"], created.json()["uri"]
        watcher.wait_type("recordingStarted", recording_id=rid, timeout=30)
        before, began = cpu_seconds(emulator), time.monotonic()
        time.sleep(RECORDED_S)  # what is recorded: the duration under test, not a wait for something
        recording_cpu = (cpu_seconds(emulator) - before) / (time.monotonic() - began)
        recorded_for = time.monotonic() - began
        assert api.http.post(f"{url}/{rid}/stop", headers=api.key_headers).status_code == 202
        assert watcher.wait_type("recordingStopped", recording_id=rid, timeout=30)["reason"] == "stopped"
    finally:
        loop.run(alice.close(), timeout=30)
        loop.stop()

    path = files / sid / f"{rid}.webm"
    assert uri == f"file://{path}" and path.is_file() and path.stat().st_size > 0
    frames, duration, size = decoded_video(path)
    assert size == (VIDEO["width"], VIDEO["height"])
    assert abs(duration - recorded_for) <= 1.0, (duration, recorded_for, frames)
    with av.open(str(path)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]  # the webm profile keeps both
    print(
        f"\nrecorded {recorded_for:.2f} s -> {frames} video frames over {duration:.2f} s"
        f" in {path.stat().st_size} bytes;"
        f" emulator CPU (share of one core): publishing only {idle_cpu:.1%}, while recording {recording_cpu:.1%}"
        f" (the recording costs {recording_cpu - idle_cpu:.1%})"
    )
