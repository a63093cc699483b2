"""A WebRTC participant built on aiortc that signals only through the public REST contract.

It behaves like a browser frontend: it joins over REST, publishes a generated video (and
optionally audio) track through a sendonly ``RTCPeerConnection``, subscribes to other
publishers with recvonly connections, trickles its ICE candidates with ``POST candidates``
(the candidates aiortc embeds in the SDP are stripped from the offer), and learns everything
else (answers, remote candidates, gathering done, announcements) from its long poll.

The long poll is a blocking HTTP request, so it runs in a thread executor while aiortc keeps
the asyncio loop; each batch of messages is then handled on the loop, in order, and routed
by ``stream`` to the peer connection it belongs to.

    participant = await WebRtcParticipant.join(base_url, session, "alice")
    published = await participant.publish()
    link = await participant.subscribe(other.participant_id)
    await link.wait_frames(10, timeout=30)
    await participant.close()
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from kms_emulator.media import parse_candidate, split_candidates
from tests.support.api import Api, Member

PUBLISH = "publish"
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


class ColorVideoTrack(MediaStreamTrack):
    """Generated video: a colour that changes every frame, with a white quarter, at a fixed rate."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self.count / self.fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        c = self.count
        arr = np.empty((self.height, self.width, 3), dtype=np.uint8)
        arr[..., 0] = (c * 5) % 256
        arr[..., 1] = (c * 3 + 80) % 256
        arr[..., 2] = (c * 7 + 160) % 256
        arr[: self.height // 2, : self.width // 2] = 255
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = int(c * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """Generated audio: a 440 Hz sine, mono s16 at 48 kHz, 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += samples
            delay = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        t = (np.arange(samples) + self._pts) / AUDIO_RATE
        data = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


def candidate_from_message(candidate: dict) -> RTCIceCandidate:
    """An aiortc RTCIceCandidate from an ``iceCandidate`` message's ``candidate`` object."""
    return parse_candidate(candidate["candidate"], candidate.get("sdpMid"), candidate.get("sdpMLineIndex"))


class StreamLink:
    """One RTCPeerConnection for one ``stream``: our publication, or a subscription to a publisher."""

    def __init__(self, stream: str, pc: RTCPeerConnection) -> None:
        self.stream = stream
        self.pc = pc
        self.request_id: str | None = None
        self.offer_posted_at: float | None = None
        self.answered_at: float | None = None
        self.first_frame_at: float | None = None
        self.local_candidates: list[dict] = []
        self.remote_candidates: list[dict] = []
        self.answered = asyncio.Event()
        self.gathering_done = asyncio.Event()
        self.connected = asyncio.Event()
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.last_video_frame: av.VideoFrame | None = None
        self._frames_changed = asyncio.Event()
        self._pending_candidates: list[dict] = []
        self._readers: list[asyncio.Task] = []
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

    # ---------------------------------------------------------------- signaling in
    async def on_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.answered_at = time.monotonic()
        self.answered.set()
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self.pc.addIceCandidate(candidate_from_message(candidate))
        if self.gathering_done.is_set():
            await self.pc.addIceCandidate(None)  # end-of-candidates came before the answer

    async def on_candidate(self, candidate: dict) -> None:
        if not candidate.get("candidate"):
            return
        self.remote_candidates.append(candidate)
        if self.pc.remoteDescription is None:
            self._pending_candidates.append(candidate)
        else:
            await self.pc.addIceCandidate(candidate_from_message(candidate))

    async def on_gathering_done(self) -> None:
        self.gathering_done.set()
        if self.pc.remoteDescription is not None:
            await self.pc.addIceCandidate(None)  # end-of-candidates

    # ---------------------------------------------------------------- media in
    def _on_connection_state(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        # Keep reading for the link's whole life: aiortc's receive queues are unbounded.
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.last_video_frame = frame
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
            self.frames[track.kind] = self.frames.get(track.kind, 0) + 1
            self._frames_changed.set()

    async def wait_frames(self, count: int, kind: str = "video", timeout: float = 30.0) -> int:
        """Waits until at least ``count`` decoded frames of ``kind`` arrived; returns the count."""

        async def reached() -> int:
            while self.frames.get(kind, 0) < count:
                self._frames_changed.clear()
                await self._frames_changed.wait()
            return self.frames[kind]

        try:
            return await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"stream {self.stream!r}: {self.frames.get(kind, 0)} {kind} frames after {timeout} s "
                f"(connection {self.pc.connectionState}, ICE {self.pc.iceConnectionState}, "
                f"answered {self.answered.is_set()}, remote candidates {len(self.remote_candidates)})"
            ) from None

    @property
    def offer_to_first_frame(self) -> float | None:
        if self.offer_posted_at is None or self.first_frame_at is None:
            return None
        return self.first_frame_at - self.offer_posted_at

    async def close(self) -> None:
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class WebRtcParticipant:
    """A session member with real media; create it with :meth:`join` inside a running loop."""

    def __init__(
        self,
        member: Member,
        *,
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        audio: bool = False,
        poll_wait: float = 2.0,
    ) -> None:
        self.member = member
        self.width, self.height, self.fps, self.audio = width, height, fps, audio
        self.poll_wait = poll_wait
        self.links: dict[str, StreamLink] = {}
        self.messages: list[dict] = []
        self.poll_error: BaseException | None = None
        self._changed = asyncio.Condition()
        # Own threads: one for the long poll, one for requests, so neither waits for the other.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"peer-{member.participant_id[:8]}")
        self._closed = False
        self._poller = asyncio.ensure_future(self._poll_loop())

    @classmethod
    async def join(cls, base_url: str, session: dict, display_name: str, **options) -> WebRtcParticipant:
        api = Api(base_url)  # own HTTP session per participant
        member = await asyncio.get_running_loop().run_in_executor(None, api.join, session, display_name)
        return cls(member, **options)

    @property
    def participant_id(self) -> str:
        return self.member.participant_id

    async def _call(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---------------------------------------------------------------- polling
    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        poll_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="long-poll")
        try:
            while not self._closed:
                try:
                    batch = await loop.run_in_executor(poll_executor, self.member.poll, self.poll_wait)
                except Exception as exc:  # noqa: BLE001 - kept for the test to report
                    self.poll_error = exc
                    async with self._changed:
                        self._changed.notify_all()
                    return
                for message in batch:
                    await self._dispatch(message)
                if batch:
                    async with self._changed:
                        self.messages.extend(batch)
                        self._changed.notify_all()
        finally:
            poll_executor.shutdown(wait=False, cancel_futures=True)

    async def _dispatch(self, message: dict) -> None:
        link = self.links.get(message.get("stream", ""))
        if link is None:
            return
        kind = message["type"]
        if kind == "sdpAnswer" and message.get("request_id") == link.request_id:
            await link.on_answer(message["sdp"])
        elif kind == "iceCandidate":
            await link.on_candidate(message["candidate"])
        elif kind == "iceGatheringDone":
            await link.on_gathering_done()

    async def wait_message(self, type_: str, timeout: float = 20.0, **fields) -> dict:
        """The first message (received already or arriving within ``timeout``) of that type and fields."""

        def find() -> dict | None:
            for message in self.messages:
                if message["type"] == type_ and all(message.get(k) == v for k, v in fields.items()):
                    return message
            if self.poll_error is not None:
                raise AssertionError(f"polling failed: {self.poll_error!r}")
            return None

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(find), timeout)
            except TimeoutError:
                raise AssertionError(f"no {type_} {fields} within {timeout} s; got {self.messages}") from None
            return find()

    # ---------------------------------------------------------------- media out
    async def _negotiate(self, link: StreamLink) -> StreamLink:
        # aiortc gathers (host candidates) during setLocalDescription and writes them into the
        # SDP; like a browser with trickle ICE we send the offer without them and POST them apart.
        await link.pc.setLocalDescription(await link.pc.createOffer())
        offer, link.local_candidates = split_candidates(link.pc.localDescription.sdp)
        self.links[link.stream] = link
        link.offer_posted_at = time.monotonic()
        link.request_id = await self._call(self.member.offer, offer, link.stream)
        response = await self._call(self.member.candidates, link.stream, link.local_candidates)
        assert response.status_code == 202, response.text
        return link

    async def publish(self) -> StreamLink:
        """Publishes generated video (and audio if enabled); returns once the offer is posted."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(ColorVideoTrack(self.width, self.height, self.fps), direction="sendonly")
        if self.audio:
            pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        return await self._negotiate(StreamLink(PUBLISH, pc))

    async def subscribe(self, publisher_id: str) -> StreamLink:
        """Receives a publisher's media (audio and video offered recvonly); returns once posted."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        return await self._negotiate(StreamLink(publisher_id, pc))

    # ---------------------------------------------------------------- the end
    async def leave(self) -> None:
        response = await self._call(self.member.leave)
        assert response.status_code == 202, response.text

    async def close(self) -> None:
        """Closes every peer connection and stops polling (without waiting for the poll in flight)."""
        self._closed = True
        self._poller.cancel()
        await asyncio.gather(self._poller, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self.links.values()), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
