"""Transactions and round-trip accounting of KurentoClient, against the real emulator in this process."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kurento import (
    AlreadyNegotiated,
    KurentoClient,
    KurentoError,
    KurentoUnavailable,
    MediaPipeline,
    NewRef,
    ObjectNotFound,
    WebRtcEndpoint,
)
from kurento import client as kurento_client
from tests.support.emulator import InProcessEmulator

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[3]
OFFER = (ROOT / "tests" / "fixtures" / "browser-sdp" / "chromium-publish.sdp").read_text()


@pytest.fixture
def client(kms: InProcessEmulator) -> Iterator[KurentoClient]:
    kurento = KurentoClient(kms.url, request_timeout=5.0)
    kurento.connect()
    yield kurento
    kurento.close()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_create_subscribe_connect_and_offer_in_one_round_trip(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    source = pipeline.create_webrtc_endpoint()
    before = client.stats
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    sub = tx.subscribe(ep, "IceCandidateFound")
    connected = tx.invoke(source, "connect", sink=ep)
    answer = tx.invoke(ep, "processOffer", offer=OFFER)
    assert isinstance(ep, NewRef) and str(ep) == "newref:0" and len(tx) == 4
    results = tx.commit()
    after = client.stats
    assert (after.round_trips - before.round_trips, after.requests - before.requests) == (1, 4)
    assert after.round_trips_by_kind["transaction"] == 1
    endpoint = tx.resolve(ep, WebRtcEndpoint)
    assert isinstance(endpoint, WebRtcEndpoint) and endpoint.id.startswith(pipeline.id + "/")
    assert results == [endpoint.id, tx.value(sub), None, tx.value(answer)]
    assert tx.value(connected) is None and str(tx.value(answer)).startswith("v=0")
    # What went on the wire: newrefs in place of the ids, one request.
    sent = kms.requests[-1]
    assert sent["method"] == "transaction"
    ops = sent["params"]["operations"]
    assert [op["id"] for op in ops] == [0, 1, 2, 3]
    assert ops[0]["params"] == {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline.id}}
    assert ops[2]["params"]["object"] == source.id and ops[2]["params"]["operationParams"] == {"sink": "newref:0"}
    assert ops[3]["params"]["object"] == "newref:0"
    assert kms.control("endpoint", object=endpoint.id)["negotiated"] is True


def test_a_failing_operation_raises_its_own_error_with_what_ran_before(client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    tx.invoke(ep, "processOffer", offer=OFFER)
    tx.invoke(ep, "processOffer", offer=OFFER)  # a second offer: 40208
    never = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    with pytest.raises(AlreadyNegotiated) as caught:
        tx.commit()
    error = caught.value
    assert error.code == 40208 and error.failed_index == 2
    created, answer = error.completed
    assert created.startswith(pipeline.id + "/") and answer.startswith("v=0")
    # The op after the failure never ran; the caller can release what was created.
    children = pipeline.invoke("getChildren")
    assert children == [created]
    with pytest.raises(RuntimeError):
        tx.value(never)
    # The error pickles with its transaction details (Celery moves exceptions between processes).
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.failed_index, copy.completed) == (40208, 2, [created, answer])


def test_the_emulator_injects_failures_into_a_transactions_operations(
    kms: InProcessEmulator, client: KurentoClient
) -> None:
    pipeline = client.create_pipeline()
    kms.control("failOperation", operation="processOffer", code=40999, message="element crashed")
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    tx.invoke(ep, "processOffer", offer=OFFER)
    with pytest.raises(KurentoError) as caught:
        tx.commit()
    assert (caught.value.code, caught.value.failed_index) == (40999, 1)
    assert kms.control("endpoint", object=caught.value.completed[0])["negotiated"] is False


def test_an_unknown_object_fails_like_a_single_request(client: KurentoClient) -> None:
    tx = client.transaction()
    tx.invoke("nope_kurento.MediaPipeline", "getName")
    with pytest.raises(ObjectNotFound) as caught:
        tx.commit()
    assert caught.value.failed_index == 0 and caught.value.completed == []


def test_a_transaction_is_single_use_and_keeps_its_own_refs(client: KurentoClient) -> None:
    tx, other = client.transaction(), client.transaction()
    pipeline = tx.create("MediaPipeline")
    with pytest.raises(ValueError, match="another transaction"):
        other.create("WebRtcEndpoint", mediaPipeline=pipeline)
    with pytest.raises(RuntimeError, match="not committed"):
        tx.value(pipeline)
    tx.commit()
    assert isinstance(tx.resolve(pipeline, MediaPipeline), MediaPipeline)
    with pytest.raises(RuntimeError):
        tx.commit()
    with pytest.raises(RuntimeError):
        tx.create("MediaPipeline")
    before = client.stats.round_trips
    assert client.transaction().commit() == [] and client.stats.round_trips == before


def test_subscriptions_in_a_transaction_lose_no_event(kms: InProcessEmulator, client: KurentoClient) -> None:
    """The emulator writes MediaSessionStarted before processOffer's response, so before the
    transaction's: the callback still gets it, once, and later events in order."""
    pipeline = client.create_pipeline()
    events: list[str] = []
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    tx.subscribe(ep, "MediaSessionStarted", lambda data: events.append("started"))
    tx.subscribe(ep, "IceCandidateFound", lambda data: events.append("found"))
    tx.subscribe(ep, "IceGatheringDone", lambda data: events.append("done"))
    tx.invoke(ep, "processOffer", offer=OFFER)
    tx.invoke(ep, "gatherCandidates")
    tx.commit()
    endpoint = tx.resolve(ep, WebRtcEndpoint)
    wait_for(lambda: events[-1:] == ["done"])
    assert events[0] == "started" and events.count("started") == 1 and set(events[1:-1]) == {"found"}
    # Routed under the resolved id with the subscription ids KMS gave: unsubscribe works as usual.
    received: list[Any] = []
    tx2 = client.transaction()
    sub = tx2.subscribe(endpoint, "MediaStateChanged", received.append)  # an existing object
    tx2.commit()
    kms.control("raiseEvent", object=endpoint.id, type="MediaStateChanged", data={"n": 1})
    wait_for(lambda: received == [{"n": 1, **received[0]}] if received else False)
    endpoint.unsubscribe(str(tx2.value(sub)))
    assert kms.control("raiseEvent", object=endpoint.id, type="MediaStateChanged", data={"n": 2})["delivered"] == 0


def test_a_failed_transaction_routes_nothing(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    existing = pipeline.create_webrtc_endpoint()
    got: list[Any] = []
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    tx.subscribe(ep, "MediaStateChanged", got.append)
    tx.subscribe(existing, "MediaStateChanged", got.append)
    tx.invoke(ep, "processOffer", offer="not sdp")
    with pytest.raises(KurentoError) as caught:
        tx.commit()
    assert caught.value.code == 40201 and caught.value.failed_index == 3
    created = caught.value.completed[0]
    for object_id in (created, existing.id):
        kms.control("raiseEvent", object=object_id, type="MediaStateChanged", data={})
    assert client.wait_events_dispatched()
    assert got == [] and client._listeners == {} and client._adoptions == 0


def test_transport_loss_raises_unavailable_and_routes_nothing(kms: InProcessEmulator) -> None:
    client = KurentoClient(kms.url, request_timeout=0.5)
    pipeline = client.create_pipeline()
    kms.control("withholdResponses", operation="transaction")
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    tx.subscribe(ep, "MediaStateChanged", lambda data: None)
    with pytest.raises(KurentoUnavailable):
        tx.commit()
    assert client.wait_events_dispatched()
    assert client._adoptions == 0 and client._listeners == {}
    client.close()


def test_request_many_counts_one_round_trip_and_can_release(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    old, new = pipeline.create_webrtc_endpoint(), pipeline.create_webrtc_endpoint()
    new.process_offer(OFFER)
    before = client.stats
    candidate = {"candidate": "candidate:1 1 UDP 2015363327 10.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("invoke", {"object": new.id, "operation": "addIceCandidate", "operationParams": {"candidate": candidate}}),
        ("invoke", {"object": new.id, "operation": "addIceCandidate", "operationParams": {"candidate": candidate}}),
        ("invoke", {"object": new.id, "operation": "gatherCandidates"}),
        ("release", {"object": old.id}),
    ]
    results = client.request_many(calls)
    assert not any(isinstance(r, Exception) for r in results)
    after = client.stats
    assert (after.round_trips - before.round_trips, after.requests - before.requests) == (1, 4)
    assert after.round_trips_by_kind.get("batch", 0) - before.round_trips_by_kind.get("batch", 0) == 1
    assert pipeline.invoke("getChildren") == [new.id]
    assert kms.control("endpoint", object=new.id)["gatheringStarted"] is True


def test_every_request_is_one_round_trip_and_observers_see_them(client: KurentoClient) -> None:
    seen: list[tuple[str, list[str]]] = []
    ops: list[tuple[str, str, str]] = []
    kurento_client.round_trip_observers.append(lambda kind, methods: seen.append((kind, list(methods))))
    kurento_client.request_observers.append(lambda method, op, seconds, outcome: ops.append((method, op, outcome)))
    try:
        pipeline = client.create_pipeline()
        pipeline.invoke("getName")
        tx = client.transaction()
        tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
        tx.invoke("nope", "getName")
        tx.invoke(pipeline, "getName")
        with pytest.raises(ObjectNotFound):
            tx.commit()
    finally:
        kurento_client.round_trip_observers.clear()
        kurento_client.request_observers.clear()
    assert seen == [("create", ["create"]), ("invoke", ["invoke"]), ("transaction", ["create", "invoke", "invoke"])]
    assert ops[-3:] == [
        ("create", "WebRtcEndpoint", "ok"),
        ("invoke", "getName", "error"),
        ("invoke", "getName", "skipped"),
    ]


def test_two_clients_count_their_own(kms: InProcessEmulator) -> None:
    first, second = KurentoClient(kms.url), KurentoClient(kms.url)
    try:
        first.create_pipeline()
        threads = [threading.Thread(target=second.create_pipeline) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each client's handshake is a ping and a connect.
        assert first.stats.round_trips_by_kind == {"ping": 1, "connect": 1, "create": 1}
        assert second.stats.round_trips_by_kind == {"ping": 1, "connect": 1, "create": 5}
        assert second.stats.requests == second.stats.round_trips == 7
    finally:
        first.close()
        second.close()
