"""negotiation.process_offer / add_candidates against nx-27017 and the in-process emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kurento
from media_tasks import negotiation
from models import PUBLISH, Endpoint
from settings import Settings
from tests.support.emulator import InProcessEmulator
from tests.support.emulator_control import count_operations
from tests.unit.media.conftest import RecordingPublisher, endpoint_id, new_participant, new_session

pytestmark = pytest.mark.timeout(30)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "browser-sdp"
OFFER = (FIXTURES / "chromium-publish.sdp").read_text()
CANDIDATES = json.loads((FIXTURES / "chromium-publish.candidates.json").read_text())


def received_candidates(kms: InProcessEmulator, endpoint_id: str) -> list[str]:
    return [c["candidate"] for c in kms.control("endpoint", object=endpoint_id)["remoteCandidates"]]


def test_an_offer_is_answered_and_the_publisher_announced(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    [(kind, to, answer)] = published.of_type("sdpAnswer")
    assert (kind, to, answer["stream"], answer["request_id"]) == ("participant", alice.id, PUBLISH, "r1")
    assert answer["sdp"].startswith("v=0")
    assert [m for _, _, m in published.of_type("streamPublished")] == [
        {"type": "streamPublished", "participant_id": alice.id, "name": "main", "audio": True, "video": True}
    ]
    stored = Endpoint.find(alice.id, PUBLISH)
    assert stored is not None and stored.answered_request_id == "r1" and stored.answer_sdp == answer["sdp"]
    state = kms.control("endpoint", object=stored.kurento.id)
    assert state["negotiated"] and state["gatheringStarted"]


def test_candidates_before_the_endpoint_wait_for_it_and_after_go_straight_to_it(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    early, late = CANDIDATES[:1], CANDIDATES[1:2]
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, early)
    buffered = Endpoint.find(alice.id, PUBLISH)
    assert buffered is not None and buffered.kurento is None and len(buffered.pending_candidates) == 1
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first_id = endpoint_id(alice.id, PUBLISH)
    assert received_candidates(kms, first_id) == [early[0]["candidate"]]
    # Before gathering, in the same transaction (KMS runs its operations in order).
    gathering = [r for r in kms.requests if r["method"] == "transaction" and first_id in str(r)][-1]
    assert [op["params"].get("operation") for op in gathering["params"]["operations"]] == [
        "addIceCandidate",
        "gatherCandidates",
    ]
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, late)
    assert received_candidates(kms, first_id) == [early[0]["candidate"], late[0]["candidate"]]


def test_a_reoffer_replaces_the_endpoint_and_releases_the_old_one(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first = endpoint_id(alice.id, PUBLISH)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r2")
    second = endpoint_id(alice.id, PUBLISH)
    assert second != first
    assert [m["request_id"] for _, _, m in published.of_type("sdpAnswer")] == ["r1", "r2"]
    assert kms.emulator.registry.get(first) is None and kms.emulator.registry.get(second) is not None
    # Its event routes went with it: a long-running worker keeps none of released endpoints.
    routed = {object_id for object_id, _ in kurento.get_client(kms.url)._listeners}
    assert first not in routed and second in routed
    # Announced once: the second offer does not publish the stream again.
    assert len(published.of_type("streamPublished")) == 1


def test_the_same_request_delivered_twice_answers_with_the_same_endpoint(
    settings: Settings, published: RecordingPublisher
) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first_id = endpoint_id(alice.id, PUBLISH)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    assert endpoint_id(alice.id, PUBLISH) == first_id
    answers = [m["sdp"] for _, _, m in published.of_type("sdpAnswer")]
    assert len(answers) >= 1 and len(set(answers)) == 1


def test_subscribing_to_a_stream_nobody_publishes_is_refused(settings: Settings, published: RecordingPublisher) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, "nobody", OFFER, "r1")
    [(kind, to, error)] = published.sent
    assert (kind, to, error["type"], error["code"], error["request_id"]) == (
        "participant",
        alice.id,
        "error",
        409,
        "r1",
    )


def test_candidates_racing_a_reoffer_reach_the_new_endpoint(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: add_candidates read the old endpoint, then a re-offer replaced it before the apply."""
    import kurento

    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first = endpoint_id(alice.id, PUBLISH)
    original = kurento.WebRtcEndpoint.add_ice_candidates
    reoffered: list[str] = []

    def reoffer_first(self: kurento.WebRtcEndpoint, candidates: list[tuple[str, str, int]]) -> None:
        # The re-offer's task runs between this task's read and its apply, as on another worker thread.
        if not reoffered:
            reoffered.append(self.id)
            negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r2")
        original(self, candidates)

    monkeypatch.setattr(kurento.WebRtcEndpoint, "add_ice_candidates", reoffer_first)
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, CANDIDATES[:1])
    second = endpoint_id(alice.id, PUBLISH)
    assert reoffered == [first] and second != first
    assert received_candidates(kms, second) == [CANDIDATES[0]["candidate"]]


def _ice_restart(ufrag: str) -> tuple[str, list[dict]]:
    """The fixture's offer and candidates as a browser's ICE restart makes them: a new ufrag."""
    return OFFER.replace("a=ice-ufrag:ljDq", f"a=ice-ufrag:{ufrag}"), [
        {**c, "candidate": c["candidate"].replace("ufrag ljDq", f"ufrag {ufrag}")} for c in CANDIDATES
    ]


def test_candidates_of_a_reoffer_arriving_during_its_process_offer_reach_its_endpoint_only(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: the re-offer's KMS transaction runs, its endpoint is not stored yet, and its first
    candidates' task reads the old endpoint: they must not go to the one about to be released."""
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first = endpoint_id(alice.id, PUBLISH)
    restart_offer, restart_candidates = _ice_restart("Rs7t")
    original = negotiation._negotiate

    def candidates_meanwhile(*args: object, **kwargs: object) -> object:
        made = original(*args, **kwargs)  # type: ignore[arg-type]
        negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, restart_candidates[:2])
        return made

    monkeypatch.setattr(negotiation, "_negotiate", candidates_meanwhile)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, restart_offer, "r2")
    second = endpoint_id(alice.id, PUBLISH)
    assert second != first
    assert received_candidates(kms, second) == [c["candidate"] for c in restart_candidates[:2]]
    assert kms.emulator.registry.get(first) is None  # released, and never sent them (it is gone)
    # In the gathering transaction, before gatherCandidates: no round trip of their own.
    gathering = [r for r in kms.requests if r["method"] == "transaction" and second in str(r)][-1]
    assert [op["params"].get("operation") for op in gathering["params"]["operations"]] == [
        "addIceCandidate",
        "addIceCandidate",
        "gatherCandidates",
        None,  # the release of the replaced endpoint
    ]


def test_candidates_of_a_reoffer_before_its_task_runs_wait_for_its_claim_and_stale_ones_are_dropped(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    session = new_session()
    alice = new_participant(session)
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first = endpoint_id(alice.id, PUBLISH)
    restart_offer, restart_candidates = _ice_restart("Rs7t")
    # The candidates' task runs before the re-offer's (any order): they wait, the old endpoint gets none.
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, restart_candidates[:1])
    assert received_candidates(kms, first) == []
    # A late candidate of the first generation still goes to the first endpoint.
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, CANDIDATES[:1])
    assert received_candidates(kms, first) == [CANDIDATES[0]["candidate"]]
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, restart_offer, "r2")
    second = endpoint_id(alice.id, PUBLISH)
    assert received_candidates(kms, second) == [restart_candidates[0]["candidate"]]
    # Now a late one of the first generation waits (it names no stored generation) and the next
    # ICE restart's claim drops it instead of giving it to an endpoint it does not belong to.
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, CANDIDATES[1:2])
    assert received_candidates(kms, second) == [restart_candidates[0]["candidate"]]
    third_offer, third_candidates = _ice_restart("Zz9q")
    negotiation.add_candidates(settings, session.id, alice.id, PUBLISH, third_candidates[:1])
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, third_offer, "r3")
    assert received_candidates(kms, endpoint_id(alice.id, PUBLISH)) == [third_candidates[0]["candidate"]]
    stored = Endpoint.find(alice.id, PUBLISH)
    assert stored is not None and stored.pending_candidates == [] and stored.ice_ufrags == "Zz9q"


def test_candidates_waiting_for_an_endpoint_are_capped_and_the_client_told(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    import dataclasses

    capped = dataclasses.replace(settings, max_candidates_per_stream=2)
    session = new_session()
    alice = new_participant(session)
    many = [{**CANDIDATES[0], "candidate": f"{CANDIDATES[0]['candidate']} x{i}"} for i in range(3)]
    negotiation.add_candidates(capped, session.id, alice.id, PUBLISH, many[:2])
    negotiation.add_candidates(capped, session.id, alice.id, PUBLISH, many[2:])
    stored = Endpoint.find(alice.id, PUBLISH)
    assert stored is not None and len(stored.pending_candidates) == 2
    [(_, to, refused)] = published.of_type("error")
    assert (to, refused["code"], refused["request_id"]) == (alice.id, 413, None)
    # The offer takes the two that waited, and the buffer starts again from empty for the next one.
    negotiation.process_offer(capped, session.id, alice.id, PUBLISH, OFFER, "r1")
    assert received_candidates(kms, endpoint_id(alice.id, PUBLISH)) == [c["candidate"] for c in many[:2]]


def test_an_unmapped_media_server_error_is_not_swallowed_as_a_refusal(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    """The task's failure hook (media_tasks.base_task) turns it into `error` 502; here it must propagate."""
    import kurento

    session = new_session()
    alice = new_participant(session)
    kms.control("failOperation", operation="processOffer", code=40999, message="boom")
    with pytest.raises(kurento.KurentoError) as raised:
        negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    assert raised.value.code == 40999
    # Used up: the next offer is answered.
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r2")
    assert [m["request_id"] for _, _, m in published.of_type("sdpAnswer")] == ["r2"]


def test_a_rerun_of_the_claiming_task_resends_the_stored_answer_and_another_task_sends_none(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    """The claim stores the answer: no processOffer again, whoever runs the request again."""
    from messaging.rerun_identity import publishing_for_task

    session = new_session()
    alice = new_participant(session)
    with publishing_for_task("task-1"):
        negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    first_id = endpoint_id(alice.id, PUBLISH)

    def process_offers() -> int:
        return count_operations(kms.requests, "processOffer")

    offers = process_offers()
    with publishing_for_task("task-1"):  # a redelivery of the same task
        negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    with publishing_for_task("task-2"):  # the same request in another task
        negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    assert endpoint_id(alice.id, PUBLISH) == first_id
    answers = [m["sdp"] for _, _, m in published.of_type("sdpAnswer")]
    assert len(answers) == 2 and len(set(answers)) == 1  # the first run's and the re-run's copy
    assert process_offers() == offers
    assert len(published.of_type("streamPublished")) == 1


def test_an_offer_of_one_who_left_leaves_no_record_and_no_endpoint(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    from models import Participant

    session = new_session()
    alice = new_participant(session)
    Participant.mark_left(alice.id, "test")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    assert Endpoint.find(alice.id, PUBLISH) is None
    assert not published.of_type("sdpAnswer")
    from models import Session

    pipeline = Session.find(session.id).pipeline
    assert pipeline is not None
    assert not [o for o in kms.emulator.registry.objects if o.startswith(pipeline.id + "/")]


def test_a_subscription_to_a_publisher_who_left_is_refused_and_released(
    settings: Settings, published: RecordingPublisher, kms: InProcessEmulator
) -> None:
    from models import Participant

    session = new_session()
    alice, bob = new_participant(session, "alice"), new_participant(session, "bob")
    negotiation.process_offer(settings, session.id, alice.id, PUBLISH, OFFER, "r1")
    Participant.mark_left(alice.id, "test")  # her records go with the leave's clean-up, later
    negotiation.process_offer(settings, session.id, bob.id, alice.id, OFFER, "r2")
    [(_, to, refused)] = published.of_type("error")
    assert (to, refused["code"], refused["request_id"]) == (bob.id, 409, "r2")
    assert Endpoint.find(bob.id, alice.id) is None
    # Bob's endpoint was created (the check comes after the claim) and released: only hers is left.
    pipeline = endpoint_id(alice.id, PUBLISH).split("/")[0]
    assert [o for o in kms.emulator.registry.objects if o.startswith(pipeline + "/")] == [
        endpoint_id(alice.id, PUBLISH)
    ]


def test_an_offer_cut_off_during_process_offer_is_refused_again_on_redelivery(
    settings: Settings, published: RecordingPublisher
) -> None:
    """No claim was made yet: the record remembers the cut-off, so the redelivery repeats the 502."""
    import dataclasses
    import threading

    import kurento

    own = InProcessEmulator("signaling").start()  # withholding cannot be undone: an emulator of its own
    try:
        local = dataclasses.replace(settings, kms_urls=(own.url,))
        session = new_session()
        alice = new_participant(session)
        own.control("withholdResponses", operation="processOffer")

        def process_offers() -> int:
            return count_operations(own.requests, "processOffer")

        def cut_when_sent() -> None:
            while process_offers() == 0:
                threading.Event().wait(0.01)
            own.control("dropConnections")

        cutter = threading.Thread(target=cut_when_sent)
        cutter.start()
        negotiation.process_offer(local, session.id, alice.id, PUBLISH, OFFER, "r1")
        cutter.join()
        negotiation.process_offer(local, session.id, alice.id, PUBLISH, OFFER, "r1")  # redelivered
        errors = [(m["code"], m["request_id"]) for _, _, m in published.of_type("error")]
        assert errors == [(502, "r1"), (502, "r1")]
        assert process_offers() == 1
    finally:
        kurento.pool.close_all()
        own.stop()
