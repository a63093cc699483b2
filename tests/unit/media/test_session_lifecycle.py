"""session_lifecycle: join announcement, leave releasing endpoints, close; nx-27017 and the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_tasks import negotiation, session_lifecycle
from models import PUBLISH, Endpoint, Participant, ParticipantState, Session
from settings import Settings
from tests.support.emulator import InProcessEmulator
from tests.unit.media.conftest import RecordingChannel, RecordingPublisher, endpoint_id, new_participant, new_session

pytestmark = pytest.mark.timeout(30)

OFFER = (Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp" / "chromium-publish.sdp").read_text()
SUBSCRIBE = (Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp" / "chromium-subscribe.sdp").read_text()


def test_a_join_is_announced_once_and_warms_the_pipeline(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    session_lifecycle.announce_join(settings, session.id, alice.id, "alice", "moderator", {"seat": 3})
    session_lifecycle.announce_join(settings, session.id, alice.id, "alice", "moderator", {"seat": 3})  # redelivered
    joined = {
        "type": "participantJoined",
        "participant_id": alice.id,
        "display_name": "alice",
        "role": "moderator",
        "metadata": {"seat": 3},
    }
    assert published.sent == [("session", session.id, joined)]
    pipeline = Session.objects(id=session.id).first().pipeline
    assert pipeline is not None and kms.emulator.registry.get(pipeline.id) is not None


def test_leaving_releases_own_and_subscriber_endpoints_and_unbinds_the_queue(
    settings: Settings, published: RecordingPublisher, channel: RecordingChannel, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "a1")
    negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE, "b1")  # bob watches alice
    endpoints = [endpoint_id(alice.id, PUBLISH), endpoint_id(bob.id, alice.id)]
    Participant.mark_left(alice.id, "left")
    session_lifecycle.finish_leave(settings, session.id, alice.id, "left", was_publishing=True)
    assert [kms.emulator.registry.get(e) for e in endpoints] == [None, None]
    assert Endpoint.objects(session_id=session.id).count() == 0
    announced = [m["type"] for kind, _, m in published.sent if kind == "session"]
    assert announced[-2:] == ["streamUnpublished", "participantLeft"]
    assert [name for name, _, _ in channel.calls] == ["queue_unbind"]
    session_lifecycle.finish_leave(settings, session.id, alice.id, "left", was_publishing=True)  # redelivered
    assert [m["type"] for kind, _, m in published.sent if kind == "session"] == announced


def test_closing_tells_everyone_and_releases_the_pipeline(
    settings: Settings, published: RecordingPublisher, channel: RecordingChannel, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "a1")
    pipeline_id = Session.objects(id=session.id).first().pipeline.id
    session_lifecycle.finish_close(settings, session.id)
    assert published.sent[-1] == ("session", session.id, {"type": "sessionClosed"})
    assert kms.emulator.registry.get(pipeline_id) is None
    assert Participant.objects(id=alice.id).first().state == ParticipantState.LEFT
    assert Endpoint.objects(session_id=session.id).count() == 0
    assert [name for name, _, _ in channel.calls] == ["exchange_delete"]
