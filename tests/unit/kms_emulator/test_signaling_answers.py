"""kms_emulator.signaling: answers to every real browser offer, and the synthetic ICE event sequence."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiortc.sdp import SessionDescription

from kms_emulator.signaling import (
    Credentials,
    SignalingEndpoint,
    answer_direction,
    build_answer,
    build_offer,
    parse_offer,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp"
OFFERS = sorted(FIXTURES.glob("*.sdp"))
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def test_fixtures_present() -> None:
    assert len(OFFERS) >= 5


@pytest.mark.parametrize("path", OFFERS, ids=lambda p: p.name)
def test_answer_is_valid_and_mirrors_the_offer(path: Path) -> None:
    offer_text = path.read_text()
    offer = SessionDescription.parse(offer_text)
    answer_text = build_answer(offer_text, Credentials.random())
    answer = SessionDescription.parse(answer_text)
    assert [m.kind for m in answer.media] == [m.kind for m in offer.media]
    _, offer_sections = parse_offer(offer_text)
    _, answer_sections = parse_offer(answer_text)
    assert [s.mid for s in answer_sections] == [s.mid for s in offer_sections]
    assert answer.group[0].semantic == "BUNDLE" and answer.group[0].items == [s.mid for s in offer_sections]
    for theirs, ours in zip(offer_sections, answer_sections, strict=True):
        assert ours.port == 9
        if ours.kind == "application":
            assert ours.first("sctp-port") == "5000"
            continue
        assert ours.direction == MIRROR[theirs.direction]
        assert set(ours.formats) <= set(theirs.formats) and ours.formats
        assert "rtcp-mux" in ours.attributes and ours.first("setup") == "active"
    for media in answer.media:
        assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", media.dtls.fingerprints[0].value)
        assert len(media.ice.usernameFragment) >= 4 and len(media.ice.password) >= 22
        if media.kind != "application":
            assert media.rtp.codecs and all(c.name for c in media.rtp.codecs)
    assert "a=candidate" not in answer_text and "a=simulcast" not in answer_text


def test_codec_selection_keeps_first_codecs_with_rtx() -> None:
    offer = (FIXTURES / "chromium-publish.sdp").read_text()
    answer = SessionDescription.parse(build_answer(offer, Credentials.random()))
    video = answer.media[1]
    assert [(c.name, c.payloadType) for c in video.rtp.codecs][:2] == [("VP8", 96), ("rtx", 97)]
    assert answer.media[0].rtp.codecs[0].name == "opus"


@pytest.mark.parametrize("bad", ["", "hello", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "v=1\r\nm=audio"])
def test_invalid_offers_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        build_answer(bad, Credentials.random())


def test_endpoint_flags_restrict_direction() -> None:
    assert answer_direction("sendrecv", recvonly=True) == "recvonly"
    assert answer_direction("sendrecv", sendonly=True) == "sendonly"
    assert answer_direction("sendonly", sendonly=True) == "inactive"
    assert answer_direction("inactive") == "inactive"


def test_generated_offer_parses() -> None:
    offer = SessionDescription.parse(build_offer(Credentials.random()))
    assert [m.kind for m in offer.media] == ["audio", "video"] and offer.media[0].dtls.role == "auto"


def test_event_sequence_after_gathering_and_remote_candidate() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> None:
        publisher = SignalingEndpoint("p", lambda t, f: events.append((t, f)))
        viewer_events: list[str] = []
        viewer = SignalingEndpoint("v", lambda t, f: viewer_events.append(t))
        publisher.connect(viewer, None)
        await publisher.add_ice_candidate("candidate:1 1 udp 1 192.0.2.2 5000 typ host", "0", 0)
        await publisher.process_offer((FIXTURES / "chromium-publish.sdp").read_text())
        await publisher.gather_candidates()
        await asyncio.sleep(0.05)
        await viewer.process_offer((FIXTURES / "chromium-subscribe.sdp").read_text())
        await viewer.gather_candidates()
        await viewer.add_ice_candidate("candidate:1 1 udp 1 192.0.2.2 5001 typ host", "0", 0)
        await asyncio.sleep(0.05)
        assert viewer_events.count("MediaFlowOutStateChanged") == 2
        await publisher.release()

    asyncio.run(scenario())
    names = [name for name, _ in events]
    assert names.index("IceGatheringDone") > names.index("IceCandidateFound")
    assert names.index("NewCandidatePairSelected") > names.index("IceGatheringDone")
    candidate = dict(events)["IceCandidateFound"]["candidate"]
    assert candidate["sdpMid"] == "0" and candidate["sdpMLineIndex"] == 0
    states = [f["state"] for n, f in events if n == "IceComponentStateChanged"]
    assert states == ["GATHERING", "CONNECTING", "CONNECTED"]
    assert sorted(f["mediaType"] for n, f in events if n == "MediaFlowInStateChanged") == ["AUDIO", "VIDEO"]
