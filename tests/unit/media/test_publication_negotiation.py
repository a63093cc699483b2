"""Publications (issue 15): renegotiation that keeps subscribers, named publications, mute.

Against the in-process emulator (signaling mode): what is connected to what is read back from
the media server itself (getSourceConnections), not from our records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kurento
from media_tasks import negotiation, publications, recordings
from models import PUBLISH, Endpoint, Recording
from models.streams import MAIN
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


# -- races between a publication's changes and a subscription being negotiated (issue 15) -----------------
# Each interleaving is forced: the subscriber's claim (or the re-offer's subscriber read) runs the other
# side's whole task first, as a second worker would in that window.


def run_before_claim_of(monkeypatch: pytest.MonkeyPatch, participant_id: str, other: object) -> list[str]:
    """Makes the next claim of `participant_id`'s endpoint run `other()` first; returns a list that gets
    an entry when it did."""
    real = Endpoint.claim_kurento
    ran: list[str] = []

    def claim(pid: str, *args: object, **kwargs: object) -> object:
        if pid == participant_id and not ran:
            ran.append(pid)
            other()  # type: ignore[operator]
        return real(pid, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Endpoint, "claim_kurento", claim)
    return ran


def ALL_FROM(source: str) -> set[tuple[str, str]]:  # noqa: N802
    return {(source, "AUDIO"), (source, "VIDEO"), (source, "DATA")}


def test_a_subscription_claimed_after_a_reoffer_follows_the_new_publish_endpoint(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    first = endpoint_id(alice.id, PUBLISH)
    ran = run_before_claim_of(
        monkeypatch,
        bob.id,
        # Bob's endpoint is connected to the first publish endpoint; nobody watched alice yet, so her
        # re-offer reads no subscribers and releases that endpoint.
        lambda: negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r2"),
    )
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r3")
    assert ran
    second = endpoint_id(alice.id, PUBLISH)
    assert second != first
    assert sources_of(settings, bob.id, alice.id) == ALL_FROM(second)
    assert [m["request_id"] for _, _, m in published.of_type("sdpAnswer")] == ["r1", "r2", "r3"]


def test_a_subscription_claimed_after_a_reoffer_read_the_subscribers_follows_it_too(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice, bob, carol = (new_participant(session, n) for n in ("alice", "bob", "carol"))
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    negotiation.process_offer(settings, session.id, carol.id, alice.id, SUBSCRIBE_SDP, "r2")  # watched now
    run_before_claim_of(
        monkeypatch,
        bob.id,
        lambda: negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r3"),
    )
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r4")
    second = endpoint_id(alice.id, PUBLISH)
    assert sources_of(settings, carol.id, alice.id) == ALL_FROM(second)  # reconnected by the re-offer
    assert sources_of(settings, bob.id, alice.id) == ALL_FROM(second)  # followed by itself


def test_a_mute_applied_before_a_subscriptions_claim_reaches_it(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")

    def mute_video() -> None:  # what the web tier and the mute task do, all before bob's claim
        assert Endpoint.set_muted(session.id, alice.id, MAIN, None, True)
        publications.apply_mute(settings, session.id, alice.id, MAIN)

    run_before_claim_of(monkeypatch, bob.id, mute_video)
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r2")
    source = endpoint_id(alice.id, PUBLISH)
    assert sources_of(settings, bob.id, alice.id) == {(source, "AUDIO"), (source, "DATA")}


def test_a_mute_racing_a_reoffer_is_applied_after_its_reconnection(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r2")
    real = Endpoint.publication
    raced: list[bool] = []

    def publication_then_mute(*args: object) -> object:
        # The re-offer read the subscribers (unmuted); a mute is stored and applied to the new endpoint
        # (it has no connection yet) before the re-offer's transaction connects every kind.
        read = real(*args)  # type: ignore[arg-type]
        if not raced:
            raced.append(True)
            assert Endpoint.set_muted(session.id, alice.id, MAIN, None, True)
            publications.apply_mute(settings, session.id, alice.id, MAIN)
        return read

    monkeypatch.setattr(Endpoint, "publication", publication_then_mute)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r3")
    assert raced
    source = endpoint_id(alice.id, PUBLISH)
    assert sources_of(settings, bob.id, alice.id) == {(source, "AUDIO"), (source, "DATA")}


def test_a_subscription_claimed_after_its_publication_was_unpublished_is_released(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, "publish:screen", PUBLISH_SDP, "r1")
    stream = f"{alice.id}:screen"
    made: list[str] = []
    real_negotiate = negotiation._negotiate_on

    def negotiate(*args: object) -> tuple[kurento.WebRtcEndpoint, str]:
        endpoint, answer = real_negotiate(*args)  # type: ignore[arg-type]
        made.append(endpoint.id)
        return endpoint, answer

    monkeypatch.setattr(negotiation, "_negotiate_on", negotiate)
    run_before_claim_of(
        monkeypatch,
        bob.id,
        lambda: publications.unpublish(settings, session.id, alice.id, "screen", "unpublished"),
    )
    negotiation.process_offer(settings, session.id, bob.id, stream, SUBSCRIBE_SDP, "r2")
    errors = [m for _, pid, m in published.of_type("error") if pid == bob.id]
    assert [(m["request_id"], m["code"]) for m in errors] == [("r2", 409)], errors
    assert Endpoint.find(bob.id, stream) is None, "no record left behind"
    client = kurento.get_client(settings.kms_urls[0])
    with pytest.raises(kurento.ObjectNotFound):
        client.proxy(made[-1]).invoke("getSourceConnections")  # released on the media server
    assert not published.of_type("sdpAnswer")[1:], "bob got no answer for a publication that is gone"


def test_a_recording_started_beside_a_reoffer_follows_the_new_publish_endpoint(
    settings: Settings, published: RecordingPublisher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = new_session()
    alice = new_participant(session, "alice")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1")
    recording = Recording.create(session.id, alice.id, MAIN, "webm", lambda rid: f"file://{tmp_path}/{rid}.webm")
    real = Recording.claim_recorder
    raced: list[bool] = []

    def claim_after_reoffer(*args: object) -> bool:
        # The recorder is connected to the first publish endpoint; the re-offer's claim does not see the
        # publication recorded yet, so it looks for no recorder to follow.
        if not raced:
            raced.append(True)
            negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r2")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(Recording, "claim_recorder", claim_after_reoffer)
    recordings.start(settings, session.id, recording.id)
    assert raced
    stored = Recording.find(recording.id)
    assert stored is not None and stored.kurento is not None
    recorder = kurento.get_client(settings.kms_urls[0]).proxy(stored.kurento.id)
    assert {c["source"] for c in recorder.invoke("getSourceConnections")} == {endpoint_id(alice.id, PUBLISH)}
