"""Emulator capacity: endpoints created per second and memory per endpoint, in either mode.

`python -m kms_emulator.bench_emulator [--mode signaling|media] [--endpoints N] [--pipelines 1]` starts the
emulator as a subprocess and prints JSON with the rate and the emulator's RSS delta (psutil on the child)
per endpoint.

- signaling mode: over one connection, creates WebRtcEndpoints and sends processOffer (chromium-publish.sdp),
  waiting for each response. Default 2000 endpoints.
- media mode: each endpoint gets a real aiortc peer in this process (recvonly audio and video, like a
  subscriber): create, subscribe IceCandidateFound, processOffer, gatherCandidates, candidates trickled both
  ways, until the endpoint reports ICE CONNECTED. Nothing feeds the endpoints, so the figure is the cost of a
  negotiated, connected, idle peer connection (media forwarding adds codec buffers on top). Default 50.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "browser-sdp" / "chromium-publish.sdp"
DEFAULT_ENDPOINTS = {"signaling": 2000, "media": 50}


class Client:
    """JSON-RPC over one websocket; a reader task routes responses by id and events by object."""

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.ids = itertools.count()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.websocket:
            message = json.loads(frame)
            if message.get("method") == "onEvent":
                value = message["params"]["value"]
                listener = self.listeners.get(value["object"])
                if listener is not None:
                    listener(value["type"], value["data"])
            elif message.get("id") in self.pending:
                self.pending.pop(message["id"]).set_result(message)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self.ids)
        future = self.pending[request_id] = asyncio.get_running_loop().create_future()
        await self.websocket.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        message = await asyncio.wait_for(future, 60)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message["result"].get("value")

    async def create_endpoint(self, pipeline: str) -> str:
        params = {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline}}
        return str(await self.call("create", params))

    async def invoke(self, obj: str, operation: str, **params: Any) -> Any:
        return await self.call(
            "invoke", {"object": obj, "operation": operation, **({"operationParams": params} if params else {})}
        )


async def signaling_endpoint(client: Client, pipeline: str, offer: str) -> None:
    endpoint = await client.create_endpoint(pipeline)
    await client.invoke(endpoint, "processOffer", offer=offer)


class MediaEndpoints:
    """Connected endpoints, each with an aiortc receiver in this process (kept open until close)."""

    def __init__(self, client: Client) -> None:
        from kms_emulator.media import _install_loopback_only

        _install_loopback_only()  # the peers here use loopback only, like the emulator's
        self.client = client
        self.peers: list[Any] = []

    async def add(self, pipeline: str) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.sdp import candidate_from_sdp

        from kms_emulator.media import local_candidates_from_sdp, strip_candidates

        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(peer)
        peer.addTransceiver("audio", direction="recvonly")
        peer.addTransceiver("video", direction="recvonly")
        endpoint = await self.client.create_endpoint(pipeline)
        connected = asyncio.get_running_loop().create_future()
        remote: list[Any] = []

        def on_event(event_type: str, data: dict[str, Any]) -> None:
            if event_type == "IceCandidateFound":
                found = data["candidate"]
                candidate = candidate_from_sdp(found["candidate"].removeprefix("candidate:"))
                candidate.sdpMid, candidate.sdpMLineIndex = found["sdpMid"], found["sdpMLineIndex"]
                remote.append(asyncio.ensure_future(peer.addIceCandidate(candidate)))
            elif event_type == "IceComponentStateChanged" and data["state"] == "CONNECTED" and not connected.done():
                connected.set_result(None)

        self.client.listeners[endpoint] = on_event
        for event in ("IceCandidateFound", "IceComponentStateChanged"):
            await self.client.call("subscribe", {"object": endpoint, "type": event})
        await peer.setLocalDescription(await peer.createOffer())
        offer = peer.localDescription.sdp
        answer = await self.client.invoke(endpoint, "processOffer", offer=strip_candidates(offer))
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await self.client.invoke(endpoint, "gatherCandidates")
        for candidate in local_candidates_from_sdp(offer):
            await self.client.invoke(
                endpoint,
                "addIceCandidate",
                candidate={"__module__": "kurento", "__type__": "IceCandidate", **candidate},
            )
        await asyncio.wait_for(connected, 60)
        await asyncio.gather(*remote)

    async def close(self) -> None:
        await asyncio.gather(*(peer.close() for peer in self.peers), return_exceptions=True)


async def measure(url: str, process: psutil.Process, mode: str, endpoints: int, pipelines: int) -> dict[str, Any]:
    offer = FIXTURE.read_text()
    async with connect(url, max_size=None) as websocket:
        client = Client(websocket)
        ids = [await client.call("create", {"type": "MediaPipeline"}) for _ in range(pipelines)]
        media = MediaEndpoints(client) if mode == "media" else None
        rss_before = process.memory_info().rss
        started = time.perf_counter()
        try:
            for index in range(endpoints):
                pipeline = ids[index % pipelines]
                if media is not None:
                    await media.add(pipeline)
                else:
                    await signaling_endpoint(client, pipeline, offer)
            elapsed = time.perf_counter() - started
            if media is not None:
                await asyncio.sleep(2.0)  # let the connected peers settle (DTLS, first RTCP) before reading RSS
            rss_after = process.memory_info().rss
            used_kib = await client.call("invoke", {"object": "manager_ServerManager", "operation": "getUsedMemory"})
        finally:
            if media is not None:
                await media.close()
        client.reader.cancel()
    result = {
        "mode": mode,
        "endpoints": endpoints,
        "pipelines": pipelines,
        "seconds": round(elapsed, 3),
        "endpoints_per_second": round(endpoints / elapsed, 1),
        "rss_before_kib": rss_before // 1024,
        "rss_after_kib": rss_after // 1024,
        "rss_delta_per_endpoint_kib": round((rss_after - rss_before) / 1024 / endpoints, 2),
        "getUsedMemory_kib": used_kib,
    }
    if media is None:
        result["rpc_per_second"] = round(2 * endpoints / elapsed, 1)  # create + processOffer
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("signaling", "media"), default="signaling")
    parser.add_argument(
        "--endpoints",
        type=int,
        default=None,
        help="endpoints to create (default 2000 in signaling mode, 50 in media mode)",
    )
    parser.add_argument("--pipelines", type=int, default=1)
    args = parser.parse_args(argv)
    endpoints = args.endpoints or DEFAULT_ENDPOINTS[args.mode]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kms_emulator", "--port", "0", "--mode", args.mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"ws://\S+", proc.stdout.readline())
        if match is None:
            raise SystemExit("emulator did not start")
        result = asyncio.run(measure(match.group(0), psutil.Process(proc.pid), args.mode, endpoints, args.pipelines))
        print(json.dumps(result, indent=1))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
