"""Client-side WebRTC peers (plain aiortc) used to exercise the emulator's media mode."""

from __future__ import annotations

import asyncio

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack

from kms_emulator.media import parse_candidate, split_candidates
from tests.support.webrtc_peer import ToneAudioTrack


class ColorVideoTrack(VideoStreamTrack):
    """320x240 frames whose colour cycles over time."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.count = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.count += 1
        c = self.count
        arr = np.empty((self.height, self.width, 3), dtype=np.uint8)
        arr[..., 0] = (c * 5) % 256
        arr[..., 1] = (c * 3 + 80) % 256
        arr[..., 2] = (c * 7 + 160) % 256
        arr[: self.height // 2, : self.width // 2] = (255, 255, 255)
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ClientPeer:
    def __init__(self, publish: bool, audio: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.track_event = asyncio.Event()
        self.pc.on("track", self._on_track)
        if publish:
            self.pc.addTrack(ColorVideoTrack())
            if audio:
                self.pc.addTrack(ToneAudioTrack())
        else:
            self.pc.addTransceiver("video", direction="recvonly")
            if audio:
                self.pc.addTransceiver("audio", direction="recvonly")

    def _on_track(self, track) -> None:
        self.tracks[track.kind] = track
        self.track_event.set()

    async def make_offer(self) -> tuple[str, str, list[dict]]:
        """Returns (full offer sdp, offer without candidates, candidates)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        full = self.pc.localDescription.sdp
        stripped, cands = split_candidates(full)
        return full, stripped, cands

    async def set_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def add_candidate(self, cand: dict) -> None:
        await self.pc.addIceCandidate(parse_candidate(cand["candidate"], cand.get("sdpMid"), cand.get("sdpMLineIndex")))

    async def recv_frames(self, kind: str, count: int, timeout: float) -> list:
        async def run():
            while kind not in self.tracks:
                self.track_event.clear()
                await self.track_event.wait()
            frames = []
            while len(frames) < count:
                frames.append(await self.tracks[kind].recv())
            return frames

        return await asyncio.wait_for(run(), timeout)

    async def close(self) -> None:
        await self.pc.close()
