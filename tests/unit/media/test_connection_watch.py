"""connection_watch.on_state_event against nx-27017: which events write, and to which endpoint."""

from __future__ import annotations

from media_tasks import connection_watch
from models import PUBLISH, Endpoint
from models.connection import current_db
from settings import Settings
from tests.support.costs import MONGO

OLD, NEW = (
    "ws://kms#p_kurento.MediaPipeline/old_kurento.WebRtcEndpoint",
    "ws://kms#p_kurento.MediaPipeline/new_kurento.WebRtcEndpoint",
)


def stored(participant_id: str) -> Endpoint:
    Endpoint.ensure("s", participant_id, PUBLISH)
    Endpoint._get_collection().update_one(
        {"participant_id": participant_id, "stream": PUBLISH}, {"$set": {"kurento": NEW}}
    )
    found = Endpoint.find(participant_id, PUBLISH)
    assert found is not None
    return found


def event(settings: Settings, watch: connection_watch.Watch, state: str, checks: list[float]) -> None:
    data = {"streamId": 1, "componentId": 1, "state": state}
    connection_watch.on_state_event(settings, "s", "p", PUBLISH, "IceComponentStateChanged", data, checks.append, watch)


def test_healthy_events_write_nothing_and_a_recovery_writes_once(settings: Settings) -> None:
    stored("p")
    watch, checks = connection_watch.Watch(NEW), []
    with MONGO.recording(current_db().name):
        for state in ("CONNECTING", "CONNECTED", "READY"):
            event(settings, watch, state, checks)
        assert sum(MONGO.take()[0].values()) == 0
        event(settings, watch, "FAILED", checks)
        assert sum(MONGO.take()[0].values()) == 1
        assert Endpoint.find("p", PUBLISH).failed_since > 0 and checks == [settings.connection_debounce_s]
        MONGO.take()
        event(settings, watch, "CONNECTED", checks)
        event(settings, watch, "CONNECTED", checks)
        assert sum(MONGO.take()[0].values()) == 1  # the one recovery
    assert Endpoint.find("p", PUBLISH).failed_since == 0.0


def test_a_replaced_endpoint_failing_does_not_start_its_successors_clock(settings: Settings) -> None:
    stored("p")
    old, checks = connection_watch.Watch(OLD), []
    event(settings, old, "FAILED", checks)
    assert Endpoint.find("p", PUBLISH).failed_since == 0.0 and checks == []


def test_a_relay_taken_over_clears_a_failure_it_did_not_see(settings: Settings) -> None:
    stored("p")
    assert Endpoint.mark_failing("p", PUBLISH, 100.0, NEW)
    taken_over, checks = connection_watch.Watch(NEW, maybe_failing=True), []
    event(settings, taken_over, "CONNECTED", checks)
    assert Endpoint.find("p", PUBLISH).failed_since == 0.0
