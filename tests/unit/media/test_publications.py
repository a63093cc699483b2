"""Publications (issue 15): renegotiation that keeps subscribers, named publications, mute.

Against the in-process emulator (signaling mode): what is connected to what is read back from
the media server itself (getSourceConnections), not from our records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kurento
from media_tasks import negotiation
from models import PUBLISH
from settings import Settings
from tests.unit.media.conftest import RecordingPublisher, endpoint_id, new_participant, new_session

pytestmark = pytest.mark.timeout(30)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp"
PUBLISH_SDP = (FIXTURES / "chromium-publish.sdp").read_text()
SUBSCRIBE_SDP = (FIXTURES / "chromium-subscribe.sdp").read_text()


def sources_of(settings: Settings, participant_id: str, stream: str) -> set[tuple[str, str]]:
    """(source endpoint id, media type) of every connection into the stored endpoint, as KMS has them."""
    client = kurento.get_client(settings.kms_urls[0])
    element = client.proxy(endpoint_id(participant_id, stream))
    return {(c["source"], c["type"]) for c in element.invoke("getSourceConnections")}


def test_a_reoffer_reconnects_every_subscriber_to_the_new_publish_endpoint(
    settings: Settings, published: RecordingPublisher
) -> None:
    session = new_session()
    alice, bob, carol = (new_participant(session, n) for n in ("alice", "bob", "carol"))
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r2")
    negotiation.process_offer(settings, session.id, carol.id, alice.id, SUBSCRIBE_SDP, "r3")
    first = endpoint_id(alice.id, PUBLISH)
    assert {source for source, _ in sources_of(settings, bob.id, alice.id)} == {first}

    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r4")

    second = endpoint_id(alice.id, PUBLISH)
    assert second != first
    for subscriber in (bob, carol):
        # Every kind from the new endpoint: the subscriber did nothing and keeps its own endpoint.
        assert sources_of(settings, subscriber.id, alice.id) == {
            (second, "AUDIO"),
            (second, "VIDEO"),
            (second, "DATA"),
        }


def test_session_bandwidth_defaults_reach_the_media_server(settings: Settings, published: RecordingPublisher) -> None:
    session = new_session()
    session.update(
        set__max_video_send_bandwidth=1500, set__min_video_send_bandwidth=150, set__max_video_recv_bandwidth=2500
    )
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r2")
    client = kurento.get_client(settings.kms_urls[0])
    publishing = client.proxy(endpoint_id(alice.id, PUBLISH))
    receiving = client.proxy(endpoint_id(bob.id, alice.id))
    assert publishing.invoke("getMaxVideoRecvBandwidth") == 2500
    assert publishing.invoke("getMaxVideoSendBandwidth") == 500  # KMS's default: a publish endpoint sends nothing
    assert receiving.invoke("getMaxVideoSendBandwidth") == 1500
    assert receiving.invoke("getMinVideoSendBandwidth") == 150
    assert receiving.invoke("getMaxVideoRecvBandwidth") == 0


def test_sent_kinds_follow_the_m_lines_and_their_directions() -> None:
    from models.streams import sent_kinds

    assert sent_kinds(PUBLISH_SDP) == (True, True)
    assert sent_kinds(SUBSCRIBE_SDP) == (False, False)
    video_only = "v=0\r\nm=audio 9 UDP 111\r\na=inactive\r\nm=video 9 UDP 96\r\na=sendonly\r\n"
    assert sent_kinds(video_only) == (False, True)
    assert sent_kinds("v=0\r\na=recvonly\r\nm=audio 9 UDP 111\r\nm=video 0 UDP 96\r\n") == (False, False)
    assert sent_kinds("v=0\r\nm=audio 9 UDP 111\r\n") == (True, False)  # no direction: sendrecv
