"""What the worker side of an offer costs (issue 13): MongoDB commands, KMS round trips and broker
publishes per task kind, counted against nx-27017 and the in-process emulator.

The bounds are what the code achieves now; counts are deterministic, so a change that adds a
database operation or a round trip to the hot path fails here and has to say why.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import kurento
from media_tasks import negotiation
from media_tasks.kms_pool import ensure_pipeline
from models import PUBLISH
from models.connection import current_db
from settings import Settings
from tests.support.costs import MONGO, kms_round_trips
from tests.support.emulator import InProcessEmulator
from tests.unit.media.conftest import RecordingPublisher, endpoint_id, new_participant, new_session

pytestmark = pytest.mark.timeout(30)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp"
PUBLISH_SDP = (FIXTURES / "chromium-publish.sdp").read_text()
SUBSCRIBE_SDP = (FIXTURES / "chromium-subscribe.sdp").read_text()
CANDIDATES = json.loads((FIXTURES / "chromium-publish.candidates.json").read_text())


@dataclass
class Cost:
    mongo: Counter[str]  # on the task's thread
    mongo_events: Counter[str]  # on the Kurento event thread (relayed events)
    kms: int
    publishes: int
    kms_stats: int  # the same, as the Kurento client's own counter (client.stats) says

    @property
    def mongo_ops(self) -> int:
        return sum(self.mongo.values())

    @property
    def event_ops(self) -> int:
        return sum(self.mongo_events.values())


class Meter:
    def __init__(self, published: RecordingPublisher, kms_counts: Counter[str], client: kurento.KurentoClient) -> None:
        self.published = published
        self.kms_counts = kms_counts
        self.client = client
        self.costs: dict[str, Cost] = {}

    def measure(self, name: str, work: object, settle: object = None) -> Cost:
        MONGO.take()
        self.kms_counts.clear()
        sent = len(self.published.sent)
        trips = self.client.stats.round_trips
        work()  # type: ignore[operator]
        kms = sum(self.kms_counts.values())
        kms_stats = self.client.stats.round_trips - trips
        if settle is not None:
            settle()  # type: ignore[operator]
        tasks, events = MONGO.take()
        cost = Cost(tasks, events, kms, len(self.published.sent) - sent, kms_stats)
        self.costs[name] = cost
        return cost


def wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def settle_events(client: kurento.KurentoClient, published: RecordingPublisher, gathered: int) -> None:
    """Until the endpoint's candidates and iceGatheringDone were relayed, and every event received
    so far was dispatched."""
    wait_for(lambda: len(published.of_type("iceGatheringDone")) >= gathered, "iceGatheringDone relayed")
    client.wait_events_dispatched()


def test_costs_per_task_kind(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a worker process does once (index creation, registering its KMS session) is not counted.
    warm = new_session()
    negotiation.process_offer(settings, warm.id, new_participant(warm).id, PUBLISH, PUBLISH_SDP, "warm")
    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    ensure_pipeline(settings, session.id)  # announce_join warms it before any offer
    client = kurento.get_client(kms.url)
    settle_events(client, published, 1)
    with MONGO.recording(current_db().name), kms_round_trips(monkeypatch) as kms_counts:
        meter = Meter(published, kms_counts, client)
        first = meter.measure(
            "first publish offer",
            lambda: negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r1"),
            lambda: settle_events(client, published, 2),
        )
        flowing: list[dict] = []
        done = threading.Event()

        def on_flow(data: dict) -> None:
            flowing.append(data)
            if len(flowing) == 2:  # audio and video: the last events of the connect sequence
                done.set()

        client.add_listener(endpoint_id(alice.id, PUBLISH), "MediaFlowInStateChanged", on_flow)
        candidates = meter.measure(
            "candidates task",
            lambda: negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, CANDIDATES),
            lambda: (done.wait(10), client.wait_events_dispatched()),
        )
        reoffer = meter.measure(
            "re-offer on publish",
            lambda: negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r2"),
            lambda: settle_events(client, published, 3),
        )
        subscribe = meter.measure(
            "subscribe offer",
            lambda: negotiation.process_offer(settings, session.id, bob.id, alice.id, SUBSCRIBE_SDP, "r3"),
            lambda: settle_events(client, published, 4),
        )
        reoffer_fed = meter.measure(
            "re-offer on publish with a subscriber",
            lambda: negotiation.process_offer(settings, session.id, alice.id, PUBLISH, PUBLISH_SDP, "r5"),
            lambda: settle_events(client, published, 5),
        )
    report = {
        name: {
            "mongo": dict(cost.mongo),
            "mongo_events": dict(cost.mongo_events),
            "kms_round_trips": cost.kms,
            "publishes": cost.publishes,
        }
        for name, cost in meter.costs.items()
    }
    print(json.dumps(report, indent=1))
    assert len(flowing) == 2, "the publish endpoint connected"
    assert [m["request_id"] for _, _, m in published.of_type("sdpAnswer")] == ["warm", "r1", "r2", "r3", "r5"]
    # The bounds: (MongoDB commands of the task, of its relayed events, KMS round trips, publishes).
    # An offer's KMS work is two transactions: create, subscriptions, connect and processOffer; then
    # the candidates that waited, gatherCandidates and the release of the endpoint it replaces.
    # A first publish offer also reads the running recordings of the publication (one projected read;
    # media_tasks.recordings.follow_publication), to connect the new endpoint to their recorders.
    # The first offer of a session a worker process handles reads the session's bandwidth defaults
    # (issue 15: set on the new endpoint in its creating transaction); cached per process after that.
    # Likewise the first offer of a participant reads its own limits (a minted token's), cached after.
    assert (first.mongo_ops, first.event_ops, first.kms, first.publishes) == (7, 0, 2, 5)
    assert (candidates.mongo_ops, candidates.event_ops, candidates.kms, candidates.publishes) == (2, 0, 1, 0)
    # A re-offer of a publication nobody watched or recorded: its state, the claim and the participant
    # (the claim hands back the `watched` and `recorded` flags, so neither list is read).
    assert (reoffer.mongo_ops, reoffer.event_ops, reoffer.kms, reoffer.publishes) == (3, 0, 2, 4)
    # A watched one reads its subscribers after the claim (they are reconnected to the new endpoint in
    # the gathering transaction, with a requestKeyframe) and its mute state after that transaction (a
    # mute that raced it is applied again): two reads more, no round trip.
    assert (reoffer_fed.mongo_ops, reoffer_fed.event_ops, reoffer_fed.kms, reoffer_fed.publishes) == (5, 0, 2, 4)
    # The subscriber's first offer in this process: its own limits read once (above); after its claim it
    # marks the publication watched and reads what feeds it now (one findAndModify).
    assert (subscribe.mongo_ops, subscribe.event_ops, subscribe.kms, subscribe.publishes) == (5, 0, 2, 4)
    assert all(cost.kms_stats == cost.kms for cost in meter.costs.values()), report
