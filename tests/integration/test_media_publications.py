"""Issue 15 with real media: aiortc peers, the whole service, the emulator in media mode.

A publisher re-offers (a new peer connection, as a browser does after a failure) and its subscriber
decodes frames again without doing anything; a muted kind stops reaching the subscriber and resumes
on unmute. The subscriber's audio is the clock for "stopped": while its video count stands still,
its audio count moves on (no sleep decides anything).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kms_emulator.media import OUT_QUEUE_SIZE
from tests.conftest import media_mode_stack
from tests.integration.test_media_call import LoopThread
from tests.support.api import Api
from tests.support.webrtc_peer import WebRtcParticipant

pytestmark = [pytest.mark.integration, pytest.mark.media]

FRAMES = 10
VIDEO = {"width": 160, "height": 120, "fps": 15}
# While video is muted, what may still arrive: the emulator's queue towards the subscriber and what
# was on the wire, a fraction of a second at 15 fps.
IN_FLIGHT = OUT_QUEUE_SIZE["video"] + 8
# Audio frames (20 ms each) that show time passed while video stood still: 2 s.
AUDIO_CLOCK = 100


@pytest.fixture(scope="module")
def media_stack(run_dir, mongodb_uri):
    with media_mode_stack(run_dir, mongodb_uri, "media-pubs") as stack:
        yield stack


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.stop()


async def _call(base_url: str) -> tuple[WebRtcParticipant, WebRtcParticipant]:
    session = Api(base_url).create_session(name="media-publications")
    alice = await WebRtcParticipant.join(base_url, session, "alice", audio=True, **VIDEO)
    bob = await WebRtcParticipant.join(base_url, session, "bob", **VIDEO)
    await alice.publish()
    await bob.wait_message("streamPublished", timeout=30, participant_id=alice.participant_id)
    link = await bob.subscribe(alice.participant_id)
    await link.wait_frames(FRAMES, timeout=60)
    return alice, bob


@pytest.mark.timeout(240)
def test_a_subscriber_decodes_again_after_the_publisher_reoffers_and_mute_stops_that_kind(media_stack, loop):
    async def scenario() -> None:
        alice, bob = await _call(media_stack.base_url)
        try:
            link = bob.links[alice.participant_id]
            # Re-offer: a fresh peer connection on the same stream; the old one goes away first.
            await alice.links["publish"].close()
            reoffered = await alice.publish()
            await reoffered.connected.wait()
            before = link.frames["video"]
            await link.wait_frames(before + 1, timeout=60)
            first = time.monotonic() - reoffered.offer_posted_at
            await link.wait_frames(before + FRAMES, timeout=60)
            print(f"\nre-offer POST -> the subscriber's first frame from the new endpoint (s): {first:.3f}")
            assert bob.links[alice.participant_id] is link  # bob did nothing

            await _mute(alice, {"video": True})
            await bob.wait_message("streamMuted", timeout=30, participant_id=alice.participant_id, video=True)
            video_at_mute = link.frames["video"]
            await link.wait_frames(link.frames["audio"] + AUDIO_CLOCK, kind="audio", timeout=30)
            assert link.frames["video"] - video_at_mute <= IN_FLIGHT, "video kept flowing while muted"

            await _mute(alice, {"video": False})
            await bob.wait_message("streamMuted", timeout=30, participant_id=alice.participant_id, video=False)
            await link.wait_frames(link.frames["video"] + FRAMES, timeout=30)
        finally:
            await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)

    loop.run(scenario(), timeout=220)


async def _mute(member: WebRtcParticipant, body: dict) -> None:
    m = member.member
    url = f"{m.base}/streams/main/mute"
    response = await asyncio.get_running_loop().run_in_executor(
        None, lambda: m.api.http.post(url, json=body, headers=m.headers)
    )
    assert response.status_code == 202, response.text
