"""A three-way call with real media: aiortc participants, the whole service, the emulator in media mode.

Every participant publishes generated video and subscribes to the two others, signaling only
through the public REST contract (offers, trickled candidates, long poll). All six
subscriptions must decode video. Then one participant leaves and the others are told.

The participants' aiortc peer connections live on one asyncio loop that runs in a background
thread for the whole module, so media keeps flowing between the tests.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import media_mode_stack
from tests.support.api import Api
from tests.support.webrtc_peer import WebRtcParticipant

pytestmark = [pytest.mark.integration, pytest.mark.media]

NAMES = ("alice", "bob", "carol")
FRAMES = 10
# 3 publishers and 6 subscriber endpoints in the emulator, 9 peer connections here: on a
# 2-core machine keep the frames small.
VIDEO = {"width": 320, "height": 240, "fps": 15}


class LoopThread:
    """An asyncio loop running in a daemon thread; run() executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webrtc-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def media_stack(run_dir, mongodb_uri):
    with media_mode_stack(run_dir, mongodb_uri, "media") as stack:
        yield stack


@dataclass
class Call:
    loop: LoopThread
    people: dict[str, WebRtcParticipant] = field(default_factory=dict)

    def run(self, coro, timeout: float = 60.0):
        return self.loop.run(coro, timeout)


async def _set_up_call(base_url: str, call: Call) -> None:
    session = Api(base_url).create_session(name="media-call")
    for name in NAMES:
        call.people[name] = await WebRtcParticipant.join(base_url, session, name, **VIDEO)
    people = list(call.people.values())
    await asyncio.gather(*(p.publish() for p in people))
    # Subscribe only once the service announced the publication (it refuses earlier offers).
    for subscriber in people:
        for publisher in people:
            if publisher is not subscriber:
                await subscriber.wait_message("streamPublished", timeout=30, participant_id=publisher.participant_id)
    await asyncio.gather(
        *(
            subscriber.subscribe(publisher.participant_id)
            for subscriber in people
            for publisher in people
            if publisher is not subscriber
        )
    )


async def _close_all(call: Call) -> None:
    await asyncio.gather(*(p.close() for p in call.people.values()), return_exceptions=True)


@pytest.fixture(scope="module")
def call(media_stack):
    call = Call(LoopThread())
    try:
        call.run(_set_up_call(media_stack.base_url, call), timeout=90)
        yield call
    finally:
        call.run(_close_all(call), timeout=30)
        call.loop.stop()


def _subscriptions(call: Call):
    for subscriber in call.people.values():
        for stream, link in subscriber.links.items():
            if stream != "publish":
                yield subscriber, link


def _name(call: Call, participant_id: str) -> str:
    return next(name for name, p in call.people.items() if p.participant_id == participant_id)


@pytest.mark.timeout(180)
def test_every_subscriber_decodes_video_from_every_publisher(call):
    async def verify():
        publications = [p.links["publish"] for p in call.people.values()]
        await asyncio.gather(*(link.answered.wait() for link in publications))
        subscriptions = list(_subscriptions(call))
        assert len(subscriptions) == 6
        deadline = time.monotonic() + 60
        for _subscriber, link in subscriptions:
            await link.wait_frames(FRAMES, timeout=max(0.1, deadline - time.monotonic()))
        return publications, subscriptions

    publications, subscriptions = call.run(verify(), timeout=90)
    for _subscriber, link in subscriptions:
        assert link.frames["video"] >= FRAMES
        frame = link.last_video_frame
        assert (frame.width, frame.height) == (VIDEO["width"], VIDEO["height"])
        # Trickle ICE worked both ways: candidates went out by POST, came back by long poll.
        assert link.local_candidates and link.remote_candidates and link.gathering_done.is_set()

    print(
        "\npublish offer POST -> sdpAnswer applied (s):",
        ", ".join(f"{link.answered_at - link.offer_posted_at:.3f}" for link in publications),
    )
    print("subscribe offer POST -> first decoded video frame (s):")
    seconds = []
    for subscriber, link in subscriptions:
        seconds.append(link.offer_to_first_frame)
        print(f"  {_name(call, subscriber.participant_id)} <- {_name(call, link.stream)}: {seconds[-1]:.3f}")
    print(f"  min {min(seconds):.3f}  median {statistics.median(seconds):.3f}  max {max(seconds):.3f}")


@pytest.mark.timeout(120)
def test_leaving_participant_is_announced_and_the_others_keep_their_media(call):
    leaver = call.people["carol"]
    stayers = [call.people["alice"], call.people["bob"]]

    async def leave():
        await leaver.leave()
        for stayer in stayers:
            unpublished = await stayer.wait_message(
                "streamUnpublished", timeout=30, participant_id=leaver.participant_id
            )
            left = await stayer.wait_message("participantLeft", timeout=30, participant_id=leaver.participant_id)
            assert left["reason"] == "left"
            assert unpublished["seq"] < left["seq"]
        # The two who stay still receive each other.
        for stayer in stayers:
            other = next(p for p in stayers if p is not stayer)
            link = stayer.links[other.participant_id]
            await link.wait_frames(link.frames["video"] + FRAMES, timeout=30)

    call.run(leave(), timeout=90)
