"""Real-media tests of the aiortc backend (kms_emulator.media): no mocks, loopback WebRTC."""

from __future__ import annotations

import asyncio
import glob
import os
from pathlib import Path

import pytest
from media_peers import ClientPeer

from kms_emulator.media import (
    AiortcBackend,
    local_candidates_from_sdp,
    parse_candidate,
    split_candidates,
    strip_candidates,
)

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "browser-sdp")
FIXTURES = sorted(glob.glob(os.path.join(FIXTURE_DIR, "*.sdp")))

pytestmark = pytest.mark.timeout(90)


class Recorder:
    """Collects the events of one endpoint and trickles its candidates to a client peer."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.peer: ClientPeer | None = None
        self._tasks: list[asyncio.Task] = []

    def __call__(self, event_type: str, fields: dict) -> None:
        self.events.append((event_type, fields))
        if event_type == "IceCandidateFound" and self.peer is not None:
            self._tasks.append(asyncio.ensure_future(self.peer.add_candidate(fields["candidate"])))

    def types(self) -> list[str]:
        return [t for t, _ in self.events]

    def has(self, event_type: str, **match) -> bool:
        return any(t == event_type and all(f.get(k) == v for k, v in match.items()) for t, f in self.events)

    async def wait_for(self, event_type: str, timeout: float = 10.0, **match) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.has(event_type, **match):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {event_type} {match}; got {self.types()}")
            await asyncio.sleep(0.02)


async def negotiate(backend, name, peer, *, early_candidates=False, embedded=False):
    """Offer from `peer` to a new endpoint, trickle ICE both ways. Returns (endpoint, recorder)."""
    rec = Recorder()
    rec.peer = peer
    ep = backend.create_endpoint(name, rec)
    full, stripped, cands = await peer.make_offer()
    assert cands, "client peer gathered no candidates"
    if early_candidates:
        for c in cands:  # before processOffer: the endpoint must buffer them
            await ep.add_ice_candidate(c["candidate"], c["sdpMid"], c["sdpMLineIndex"])
    answer = await ep.process_offer(full if embedded else stripped)
    assert "a=candidate" not in answer
    await peer.set_answer(answer)
    await ep.gather_candidates()
    if not early_candidates and not embedded:
        for c in cands:
            text = "candidate:" + c["candidate"].removeprefix("candidate:")
            await ep.add_ice_candidate(text, c["sdpMid"], c["sdpMLineIndex"])
    return ep, rec


def assert_connected_events(rec: Recorder) -> None:
    types = rec.types()
    assert "IceCandidateFound" in types
    assert "IceGatheringDone" in types
    assert rec.has("IceComponentStateChanged", state="CONNECTED")
    assert "NewCandidatePairSelected" in types
    pair = next(f for t, f in rec.events if t == "NewCandidatePairSelected")["candidatePair"]
    assert pair["localCandidate"].startswith("candidate:") and "127.0.0.1" in pair["localCandidate"]
    assert pair["remoteCandidate"].startswith("candidate:")


def test_one_publisher_one_receiver_video_and_audio():
    async def main():
        backend = AiortcBackend()
        pub, sub = ClientPeer(publish=True), ClientPeer(publish=False)
        try:
            a, rec_a = await negotiate(backend, "A", pub)
            b, rec_b = await negotiate(backend, "B", sub, early_candidates=True)
            a.connect(b, None)
            a.connect(b, None)  # repeated connect is a no-op
            frames = await sub.recv_frames("video", 10, timeout=20)
            assert len(frames) >= 10
            assert frames[0].width == 320 and frames[0].height == 240
            audio = await sub.recv_frames("audio", 10, timeout=10)
            assert len(audio) == 10
            await rec_a.wait_for("MediaFlowInStateChanged", state="FLOWING", mediaType="VIDEO")
            await rec_a.wait_for("MediaFlowInStateChanged", state="FLOWING", mediaType="AUDIO")
            await rec_b.wait_for("MediaFlowOutStateChanged", state="FLOWING", mediaType="VIDEO")
            for rec in (rec_a, rec_b):
                assert_connected_events(rec)
                assert rec.has("ConnectionStateChanged", newState="CONNECTED")
                assert rec.has("MediaStateChanged", newState="CONNECTED")
            # KMS order: GATHERING before CONNECTING before CONNECTED before READY
            states = [f["state"] for t, f in rec_a.events if t == "IceComponentStateChanged"]
            order = [states.index(s) for s in ("GATHERING", "CONNECTING", "CONNECTED", "READY")]
            assert order == sorted(order)

            # Releasing the source stops the sink: NOT_FLOWING on its output.
            await a.release()
            await rec_b.wait_for("MediaFlowOutStateChanged", state="NOT_FLOWING", mediaType="VIDEO", timeout=5)
        finally:
            await pub.close()
            await sub.close()
            await backend.close()

    asyncio.run(main())


def test_one_publisher_three_receivers_connected_before_media():
    async def main():
        backend = AiortcBackend()
        pub = ClientPeer(publish=True, audio=False)
        subs = [ClientPeer(publish=False, audio=False) for _ in range(3)]
        try:
            # The publisher's endpoint exists and is connected to the sinks before any media.
            rec_a = Recorder()
            rec_a.peer = pub
            a = backend.create_endpoint("A", rec_a)
            sinks = []
            for i, sub in enumerate(subs):
                ep, rec = await negotiate(backend, f"B{i}", sub)
                a.connect(ep, "VIDEO")
                sinks.append((ep, rec))
            full, stripped, cands = await pub.make_offer()
            answer = await a.process_offer(stripped)
            await pub.set_answer(answer)
            await a.gather_candidates()
            for c in cands:
                await a.add_ice_candidate(c["candidate"], c["sdpMid"], c["sdpMLineIndex"])
            results = await asyncio.gather(*(s.recv_frames("video", 10, timeout=25) for s in subs))
            assert all(len(r) >= 10 for r in results)
            await rec_a.wait_for("MediaFlowInStateChanged", state="FLOWING", mediaType="VIDEO")
            assert_connected_events(rec_a)
            for _, rec in sinks:
                assert_connected_events(rec)
                await rec.wait_for("MediaFlowOutStateChanged", state="FLOWING", mediaType="VIDEO")
            # Disconnecting one sink leaves the others running.
            a.disconnect(sinks[0][0], "VIDEO")
            await sinks[0][1].wait_for("MediaFlowOutStateChanged", state="NOT_FLOWING", mediaType="VIDEO")
            more = await subs[1].recv_frames("video", 5, timeout=10)
            assert len(more) == 5
        finally:
            await pub.close()
            for s in subs:
                await s.close()
            await backend.close()

    asyncio.run(main())


def test_candidates_embedded_in_offer():
    async def main():
        backend = AiortcBackend()
        pub, sub = ClientPeer(publish=True, audio=False), ClientPeer(publish=False, audio=False)
        try:
            a, rec_a = await negotiate(backend, "A", pub, embedded=True)
            b, rec_b = await negotiate(backend, "B", sub, embedded=True)
            a.connect(b, "VIDEO")
            frames = await sub.recv_frames("video", 10, timeout=20)
            assert len(frames) >= 10
            assert_connected_events(rec_a)
        finally:
            await pub.close()
            await sub.close()
            await backend.close()

    asyncio.run(main())


def test_generate_offer_and_process_answer():
    async def main():
        backend = AiortcBackend()
        pub = ClientPeer(publish=True, audio=False)
        # The emulator offers to a receiving client.
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from kms_emulator.media import split_candidates

        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        got = asyncio.Event()
        tracks = {}

        @client.on("track")
        def on_track(track):
            tracks[track.kind] = track
            got.set()

        try:
            a, rec_a = await negotiate(backend, "A", pub)
            rec_b = Recorder()
            b = backend.create_endpoint("B", rec_b, sendonly=True)

            class Trickle:
                async def add_candidate(self, cand):
                    from media_peers import ClientPeer as _C

                    await _C.add_candidate(type("X", (), {"pc": client})(), cand)

            rec_b.peer = Trickle()
            offer = await b.generate_offer()
            assert "a=candidate" not in offer and "a=sendonly" in offer
            await client.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await client.setLocalDescription(await client.createAnswer())
            answer, cands = split_candidates(client.localDescription.sdp)
            local = await b.process_answer(answer)
            assert "a=candidate" not in local
            await b.gather_candidates()
            for c in cands:
                await b.add_ice_candidate(c["candidate"], c["sdpMid"], c["sdpMLineIndex"])
            a.connect(b, None)
            await asyncio.wait_for(got.wait(), 10)

            async def frames(n):
                return [await tracks["video"].recv() for _ in range(n)]

            assert len(await asyncio.wait_for(frames(10), 20)) == 10
            assert_connected_events(rec_b)
        finally:
            await pub.close()
            await client.close()
            await backend.close()

    asyncio.run(main())


@pytest.mark.parametrize("path", FIXTURES, ids=[os.path.basename(p) for p in FIXTURES])
def test_browser_offers_get_answers(path):
    async def main():
        backend = AiortcBackend()
        events = []
        try:
            ep = backend.create_endpoint("X", lambda t, f: events.append((t, f)))
            offer = Path(path).read_text()
            answer = await ep.process_offer(offer)
            assert answer.startswith("v=0")
            assert "a=candidate" not in answer and "a=end-of-candidates" not in answer
            assert answer.count("\nm=") == offer.count("\nm=")
            assert "a=fingerprint:" in answer and "a=ice-ufrag:" in answer
            await ep.gather_candidates()
            await asyncio.sleep(0.05)
            types = [t for t, _ in events]
            assert "IceCandidateFound" in types and types[-1] == "IceGatheringDone"
            for t, f in events:
                if t == "IceCandidateFound":
                    c = f["candidate"]
                    assert c["candidate"].startswith("candidate:") and " 127.0.0.1 " in c["candidate"]
                    assert c["sdpMid"] == "0" and c["sdpMLineIndex"] == 0
            # the browser's trickled candidates parse (they are not reachable; no ICE needed)
            import json

            cpath = path[: -len(".sdp")] + ".candidates.json"
            if os.path.exists(cpath):
                for c in json.loads(Path(cpath).read_text()):
                    await ep.add_ice_candidate(c["candidate"], c["sdpMid"], c["sdpMLineIndex"])
        finally:
            await backend.close()

    asyncio.run(main())


def test_unparsable_offer_raises_value_error():
    async def main():
        backend = AiortcBackend()
        try:
            ep = backend.create_endpoint("X", lambda t, f: None)
            with pytest.raises(ValueError):
                await ep.process_offer("this is not sdp")
            ep2 = backend.create_endpoint("Y", lambda t, f: None)
            with pytest.raises(ValueError):
                await ep2.process_offer("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=garbage\r\n")
        finally:
            await backend.close()

    asyncio.run(main())


def test_strip_candidates():
    sdp = "v=0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=end-of-candidates\r\nm=video 9 X 96\r\n"
    assert strip_candidates(sdp) == "v=0\r\nm=video 9 X 96\r\n"


def test_split_candidates_keeps_each_bundled_candidate_once_with_its_mid():
    host = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    sdp = (
        "v=0\r\na=group:BUNDLE a v\r\n"
        f"m=audio 9 X 111\r\na=mid:a\r\na={host}\r\na=end-of-candidates\r\n"
        f"m=video 9 X 96\r\na=mid:v\r\na={host}\r\na=candidate:2 1 tcp 1 127.0.0.1 9 typ host\r\n"
    )
    stripped, found = split_candidates(sdp)
    assert "candidate" not in stripped and stripped.count("m=") == 2
    assert found == [
        {"candidate": host, "sdpMid": "a", "sdpMLineIndex": 0},
        {"candidate": "candidate:2 1 tcp 1 127.0.0.1 9 typ host", "sdpMid": "v", "sdpMLineIndex": 1},
    ]
    # The emulator announces one transport per BUNDLE group: the follower's candidate goes.
    assert local_candidates_from_sdp(sdp) == found[:1]


def test_parse_candidate_takes_every_spelling_of_a_candidate_line():
    line = "candidate:842163049 1 udp 1677729535 192.0.2.7 46154 typ srflx raddr 10.0.0.2 rport 46154"
    for text in (line, "a=" + line, line[len("candidate:") :], f"  {line}\r\n"):
        parsed = parse_candidate(text, "0", 0)
        assert (parsed.ip, parsed.port, parsed.type, parsed.protocol) == ("192.0.2.7", 46154, "srflx", "udp")
        assert (parsed.relatedAddress, parsed.sdpMid, parsed.sdpMLineIndex) == ("10.0.0.2", "0", 0)
    with pytest.raises(ValueError):
        parse_candidate("candidate:garbage")


def test_flow_stops_after_two_seconds_without_frames():
    async def main():
        backend = AiortcBackend()
        pub, sub = ClientPeer(publish=True, audio=False), ClientPeer(publish=False, audio=False)
        try:
            a, rec_a = await negotiate(backend, "A", pub)
            b, rec_b = await negotiate(backend, "B", sub)
            a.connect(b, "VIDEO")
            assert len(await sub.recv_frames("video", 10, timeout=20)) == 10
            # The publisher keeps its connection but stops sending video.
            pub.pc.getSenders()[0].replaceTrack(None)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await rec_a.wait_for("MediaFlowInStateChanged", state="NOT_FLOWING", mediaType="VIDEO", timeout=6)
            assert 1.5 < loop.time() - t0 < 4.0
            await rec_b.wait_for("MediaFlowOutStateChanged", state="NOT_FLOWING", mediaType="VIDEO", timeout=3)
            assert not rec_a.has("ConnectionStateChanged", newState="DISCONNECTED")
        finally:
            await pub.close()
            await sub.close()
            await backend.close()

    asyncio.run(main())


def test_connect_to_foreign_sink_is_ignored():
    async def main():
        backend = AiortcBackend()
        try:
            ep = backend.create_endpoint("X", lambda t, f: None)
            sink = backend.create_endpoint("Y", lambda t, f: None)
            ep.connect(sink, "VIDEO")
            # A sink without real media (a signaling-only element), and DATA, forward nothing
            # and leave the existing VIDEO link as it was.
            ep.connect(object(), None)
            ep.disconnect(object(), "VIDEO")
            ep.connect(ep, "DATA")
            assert ep._sinks == {"audio": [], "video": [sink]}
            assert ep._source == {"audio": None, "video": None}
            assert sink._source == {"audio": None, "video": ep}
        finally:
            await backend.close()

    asyncio.run(main())


def test_answer_directions_follow_offer_and_flags():
    def dirs(sdp):
        names = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
        return [line[2:] for line in sdp.splitlines() if line in names]

    async def main():
        backend = AiortcBackend()
        base = FIXTURE_DIR + "/"
        try:
            publish = Path(base + "chromium-publish.sdp").read_text()
            subscribe = Path(base + "chromium-subscribe.sdp").read_text()
            plain_a = backend.create_endpoint("a", lambda t, f: None)
            assert dirs(await plain_a.process_offer(publish)) == ["sendrecv"] * 2
            plain_b = backend.create_endpoint("b", lambda t, f: None)
            assert dirs(await plain_b.process_offer(subscribe)) == ["sendonly"] * 2
            ro = backend.create_endpoint("c", lambda t, f: None, recvonly=True)
            assert dirs(await ro.process_offer(publish)) == ["recvonly"] * 2
            so = backend.create_endpoint("d", lambda t, f: None, sendonly=True)
            assert dirs(await so.process_offer(publish)) == ["sendonly"] * 2
        finally:
            await backend.close()

    asyncio.run(main())
