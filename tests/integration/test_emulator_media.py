"""The emulator in media mode, driven through the real Kurento JSON-RPC protocol.

Starts `python -m kms_emulator --port PORT --mode media`; one aiortc publisher (generated video
and audio) sends to WebRtcEndpoint A, and `A.connect(B_i)` feeds three receiving endpoints, each
negotiated with its own aiortc receiver. Frames are JSON-RPC messages over a plain
websocket-client connection. With -s it prints the time from processOffer to the first decoded
frame at each receiver. Memory per endpoint: `python -m kms_emulator.bench_emulator --mode media`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time

import pytest
import websocket

from tests.support.emulator import emulator_process

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "kms_emulator_media"))
from media_peers import ClientPeer  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def media_server(run_dir):
    # KMS_EMULATOR_MEDIA_CMD: another command line to start the server ({port} is substituted).
    custom = os.environ.get("KMS_EMULATOR_MEDIA_CMD")
    command = custom.split() if custom else None
    with emulator_process(run_dir / "logs", "media", name="kms-media-emulator", command=command) as kms:
        yield kms.url, kms


class RpcClient:
    """Raw JSON-RPC frames over websocket-client; a reader thread feeds the asyncio loop."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ws = websocket.create_connection(url, timeout=10)
        self.ws.settimeout(None)
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.listeners: dict[str, list] = {}
        self.session_id = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except Exception:
                return
            if not raw:
                return
            self.loop.call_soon_threadsafe(self._dispatch, json.loads(raw))

    def _dispatch(self, msg: dict) -> None:
        if msg.get("method") == "onEvent":
            value = msg["params"]["value"]
            self.events.append(value)
            for cb in self.listeners.get(value["object"], []):
                cb(value["type"], value["data"])
            return
        fut = self.pending.pop(msg.get("id"), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def call(self, method: str, **params):
        req_id = next(self.ids)
        if self.session_id is not None:
            params.setdefault("sessionId", self.session_id)
        fut = self.loop.create_future()
        self.pending[req_id] = fut
        with self.lock:
            self.ws.send(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 20)
        if "error" in msg:
            raise RuntimeError(f"{method} failed: {msg['error']}")
        result = msg["result"]
        self.session_id = result.get("sessionId", self.session_id)
        return result.get("value")

    def has_event(self, obj: str, type_: str, **match) -> bool:
        return any(
            e["object"] == obj and e["type"] == type_ and all(e["data"].get(k) == v for k, v in match.items())
            for e in self.events
        )

    async def wait_event(self, obj: str, type_: str, timeout: float = 10, **match) -> None:
        deadline = time.monotonic() + timeout
        while not self.has_event(obj, type_, **match):
            if time.monotonic() > deadline:
                seen = [(e["type"], e["data"].get("state")) for e in self.events if e["object"] == obj]
                raise AssertionError(f"no {type_} {match} on {obj}; saw {seen}")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


EVENTS = [
    "IceCandidateFound",
    "IceGatheringDone",
    "IceComponentStateChanged",
    "NewCandidatePairSelected",
    "MediaFlowInStateChanged",
    "MediaFlowOutStateChanged",
    "MediaStateChanged",
]


async def create_endpoint(rpc: RpcClient, pipeline: str, peer: ClientPeer | None) -> str:
    ep = await rpc.call("create", type="WebRtcEndpoint", constructorParams={"mediaPipeline": pipeline})
    for ev in EVENTS:
        await rpc.call("subscribe", object=ep, type=ev)
    if peer is not None:
        tasks = []

        def on_event(type_, data):
            if type_ == "IceCandidateFound":
                cand = data["candidate"]
                tasks.append(asyncio.ensure_future(peer.add_candidate(cand)))

        rpc.listeners.setdefault(ep, []).append(on_event)
    return ep


async def negotiate(rpc: RpcClient, ep: str, peer: ClientPeer) -> None:
    _, offer, cands = await peer.make_offer()
    answer = await rpc.call("invoke", object=ep, operation="processOffer", operationParams={"offer": offer})
    assert "a=candidate" not in answer
    await peer.set_answer(answer)
    await rpc.call("invoke", object=ep, operation="gatherCandidates")
    for c in cands:
        cand = {
            "__module__": "kurento",
            "__type__": "IceCandidate",
            "candidate": "candidate:" + c["candidate"].removeprefix("candidate:"),
            "sdpMid": c["sdpMid"],
            "sdpMLineIndex": c["sdpMLineIndex"],
        }
        await rpc.call("invoke", object=ep, operation="addIceCandidate", operationParams={"candidate": cand})


PUBLISHED_SIZE = (320, 240)  # media_peers.ColorVideoTrack


def assert_publishers_picture(frames: list) -> None:
    """Decoded frames show what the publisher drew: a white top-left quarter, colours that change."""
    corners = []
    for frame in frames:
        assert (frame.width, frame.height) == PUBLISHED_SIZE
        picture = frame.to_ndarray(format="rgb24").astype(float)
        # Inside the quarter, away from its edges where VP8 blurs the boundary.
        assert picture[10:100, 10:140].mean() > 200, "the white quarter is missing"
        corners.append(picture[140:230, 180:310].mean(axis=(0, 1)))
    assert max(abs(a - b).max() for a in corners for b in corners) > 10, "the colour never changes"


def assert_tone(frames: list) -> None:
    """Decoded audio at 48 kHz that is not silence (the publisher sends a 440 Hz sine)."""
    assert all(frame.sample_rate == 48000 for frame in frames)
    assert max(abs(frame.to_ndarray()).max() for frame in frames) > 1000, "only silence arrived"


def test_one_publisher_three_receivers_through_connect(media_server):
    url, _proc = media_server

    async def main():
        loop = asyncio.get_running_loop()
        rpc = RpcClient(url, loop)
        publisher = ClientPeer(publish=True)
        receivers = [ClientPeer(publish=False) for _ in range(3)]
        try:
            pipeline = await rpc.call("create", type="MediaPipeline")
            source = await create_endpoint(rpc, pipeline, publisher)
            sinks = [await create_endpoint(rpc, pipeline, peer) for peer in receivers]
            # Two receivers are connected before any media exists, the third once the stream runs.
            for sink in sinks[:2]:
                await rpc.call("invoke", object=source, operation="connect", operationParams={"sink": sink})

            offered: dict[int, float] = {}
            first_frame: dict[int, float] = {}

            async def first_video(index: int) -> None:
                await receivers[index].recv_frames("video", 1, timeout=30)
                first_frame[index] = time.monotonic()

            waits = [asyncio.ensure_future(first_video(i)) for i in range(2)]
            publisher_offered = time.monotonic()
            await negotiate(rpc, source, publisher)
            for index in range(2):
                offered[index] = time.monotonic()
                await negotiate(rpc, sinks[index], receivers[index])
            await asyncio.gather(*waits)

            await rpc.call("invoke", object=source, operation="connect", operationParams={"sink": sinks[2]})
            late = asyncio.ensure_future(first_video(2))
            offered[2] = time.monotonic()
            await negotiate(rpc, sinks[2], receivers[2])
            await late

            for peer in receivers:
                assert_publishers_picture(await peer.recv_frames("video", 10, timeout=30))
                assert_tone(await peer.recv_frames("audio", 25, timeout=30))

            for endpoint in (source, *sinks):
                await rpc.wait_event(endpoint, "IceGatheringDone")
                await rpc.wait_event(endpoint, "IceComponentStateChanged", state="CONNECTED")
                await rpc.wait_event(endpoint, "NewCandidatePairSelected")
            for media_type in ("VIDEO", "AUDIO"):
                await rpc.wait_event(source, "MediaFlowInStateChanged", state="FLOWING", mediaType=media_type)
                for sink in sinks:
                    await rpc.wait_event(sink, "MediaFlowOutStateChanged", state="FLOWING", mediaType=media_type)
            sources = await rpc.call(
                "invoke", object=source, operation="getSinkConnections", operationParams={"mediaType": "VIDEO"}
            )
            assert sorted(c["sink"] for c in sources) == sorted(sinks)

            print()
            for index in range(3):
                when = "connected before the publisher negotiated" if index < 2 else "connected to a running stream"
                line = (
                    f"receiver {index + 1} ({when}): processOffer -> first decoded frame "
                    f"{(first_frame[index] - offered[index]) * 1000:.0f} ms"
                )
                if index < 2:
                    since_publisher = (first_frame[index] - publisher_offered) * 1000
                    line += f"; from the publisher's processOffer {since_publisher:.0f} ms"
                print(line)

            await rpc.call("release", object=pipeline)
        finally:
            rpc.close()
            for peer in (publisher, *receivers):
                await peer.close()

    asyncio.run(main())
