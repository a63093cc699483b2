"""The kurento client against the real KMS emulator (``python -m kms_emulator --mode signaling``)."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kurento import (
    AlreadyNegotiated,
    KurentoClient,
    KurentoError,
    MediaObject,
    MediaPipeline,
    ObjectNotFound,
    RecorderEndpoint,
    ServerManager,
    WebRtcEndpoint,
)
from kurento import client as kurento_client
from tests.support import emulator_control
from tests.support.emulator import EmulatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOG_DIR = Path(tempfile.mkdtemp(prefix="kurento-client-tests-"))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "browser-sdp"
OFFER = (FIXTURES / "chromium-publish.sdp").read_text()
CANDIDATES = json.loads((FIXTURES / "chromium-publish.candidates.json").read_text())


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _start_emulator() -> EmulatorProcess:
    # Killed and started again on its port by the tests of a media server that restarts.
    return EmulatorProcess(LOG_DIR, "signaling", test_control=True).start()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    server = _start_emulator()
    yield server
    server.kill()


@pytest.fixture
def client(emulator: EmulatorProcess) -> Iterator[KurentoClient]:
    kurento = KurentoClient(emulator.url, request_timeout=10.0)
    yield kurento
    kurento.close()


class EventLog:
    """Collects events per type from the dispatcher thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def recorder(self, event_type: str) -> Callable[[dict[str, Any]], None]:
        def record(data: dict[str, Any]) -> None:
            with self._lock:
                self.events.append((event_type, data))

        return record

    def types(self) -> list[str]:
        with self._lock:
            return [event_type for event_type, _ in self.events]


def test_server_manager(client: KurentoClient) -> None:
    manager = client.server_manager
    assert isinstance(manager, ServerManager) and manager.id == "manager_ServerManager"
    info = manager.get_info()
    assert {"core", "elements", "filters"} <= {module["name"] for module in info["modules"]}
    assert isinstance(manager.get_used_memory(), int) and manager.get_used_memory() > 0
    assert manager.get_cpu_count() >= 1
    assert isinstance(manager.get_used_cpu(50), float)
    pipeline = client.create_pipeline()
    assert pipeline.id in manager.get_pipelines()
    assert isinstance(manager.get_sessions(), list)
    assert type(client.get_object("manager_ServerManager")) is ServerManager


def test_pipeline_and_endpoint_lifecycle(client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    assert isinstance(pipeline, MediaPipeline) and pipeline.id.endswith("_kurento.MediaPipeline")
    endpoint = pipeline.create_webrtc_endpoint(recvonly=True)
    player = pipeline.create_webrtc_endpoint()
    assert isinstance(endpoint, WebRtcEndpoint) and endpoint.id.startswith(pipeline.id + "/")
    assert type(client.get_object(pipeline.id)) is MediaPipeline
    assert type(client.get_object(endpoint.id)) is WebRtcEndpoint
    assert client.proxy(endpoint.id, WebRtcEndpoint) == endpoint

    answer = endpoint.process_offer(OFFER)
    assert answer.startswith("v=0")
    assert endpoint.get_remote_session_descriptor().startswith("v=0")
    assert endpoint.get_local_session_descriptor().startswith("v=0")
    for candidate in CANDIDATES:
        endpoint.add_ice_candidate(candidate["candidate"], candidate["sdpMid"], candidate["sdpMLineIndex"])

    player.connect(endpoint)
    player.connect(endpoint, "VIDEO")  # repeated connects are legal (the group-call tutorial does it)
    player.disconnect(endpoint, "VIDEO")
    player.disconnect(endpoint)
    assert endpoint.invoke("getMediaPipeline") == pipeline.id

    pipeline.release()
    with pytest.raises(ObjectNotFound):
        endpoint.get_local_session_descriptor()
    pipeline.release()  # releasing an unknown id succeeds
    client.proxy("no-such-object").release()


def test_recorder_endpoint_states_and_events(client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    publisher = pipeline.create_webrtc_endpoint()
    recorder = pipeline.create_recorder_endpoint("file:///tmp/kurento-client-test.mp4", media_profile="MP4")
    assert type(client.get_object(recorder.id)) is RecorderEndpoint and recorder.id.startswith(pipeline.id + "/")
    assert recorder.get_uri() == "file:///tmp/kurento-client-test.mp4" and recorder.get_state() == "STOP"
    events: list[tuple[str, Any]] = []
    seen = threading.Event()

    def on(kind: str) -> Callable[[dict], None]:
        def record(data: dict) -> None:
            events.append((kind, data.get("state")))
            if kind == "Stopped":
                seen.set()

        return record

    recorder.subscribe_many({kind: on(kind) for kind in ("UriEndpointStateChanged", "Recording", "Stopped")})
    publisher.connect(recorder)
    recorder.record()
    assert recorder.get_state() == "START"
    recorder.stop_and_wait()
    assert recorder.get_state() == "STOP"
    assert seen.wait(5)
    client.wait_events_dispatched()
    assert events == [
        ("UriEndpointStateChanged", "START"),
        ("Recording", None),
        ("UriEndpointStateChanged", "STOP"),
        ("Stopped", None),
    ]
    with pytest.raises(ValueError, match="media_profile"):
        pipeline.create_recorder_endpoint("file:///tmp/x.webm", media_profile="AVI")
    # What the client does not check, the server refuses as KMS does (marshalling, 40001).
    with pytest.raises(KurentoError) as refused:
        pipeline.create_element("RecorderEndpoint", uri="file:///tmp/x.webm", media_profile="AVI")
    assert refused.value.code == 40001
    with pytest.raises(KurentoError) as missing:
        pipeline.create_element("RecorderEndpoint")
    assert missing.value.code == 40001
    pipeline.release()


def test_candidates_in_one_round_trip_reach_the_endpoint_in_order(
    emulator: EmulatorProcess, client: KurentoClient
) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    endpoint.process_offer(OFFER)
    endpoint.add_ice_candidates([(c["candidate"], c["sdpMid"], c["sdpMLineIndex"]) for c in CANDIDATES])
    received = emulator_control.remote_candidates(emulator.url, endpoint.id)
    assert [c["candidate"] for c in received] == [c["candidate"] for c in CANDIDATES]
    endpoint.release()
    with pytest.raises(ObjectNotFound):  # the first error comes back, once every request was answered
        endpoint.add_ice_candidates([(c["candidate"], c["sdpMid"], c["sdpMLineIndex"]) for c in CANDIDATES])


def test_errors(client: KurentoClient) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        client.get_object("nope")
    assert caught.value.code == 40101
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    endpoint.process_offer(OFFER)
    with pytest.raises(AlreadyNegotiated) as again:
        endpoint.process_offer(OFFER)
    assert again.value.code == 40208


def test_ice_events_after_gather_candidates(client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    log = EventLog()
    found = endpoint.subscribe("IceCandidateFound", log.recorder("IceCandidateFound"))
    endpoint.subscribe("IceGatheringDone", log.recorder("IceGatheringDone"))
    endpoint.process_offer(OFFER)
    endpoint.gather_candidates()
    _wait_for(lambda: "IceGatheringDone" in log.types())
    time.sleep(0.2)  # late candidates may follow IceGatheringDone
    assert "IceCandidateFound" in log.types()
    candidate = next(data for kind, data in log.events if kind == "IceCandidateFound")["candidate"]
    assert candidate["__type__"] == "IceCandidate" and candidate["candidate"].startswith("candidate:")
    assert all(data["source"] == endpoint.id for _, data in log.events)
    endpoint.unsubscribe(found)


def test_takeover_receives_the_first_clients_events(emulator: EmulatorProcess, client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    first_log, heir_log = EventLog(), EventLog()
    endpoint.subscribe("IceCandidateFound", first_log.recorder("IceCandidateFound"))
    endpoint.subscribe("IceGatheringDone", first_log.recorder("IceGatheringDone"))
    endpoint.process_offer(OFFER)

    heir = KurentoClient(emulator.url, request_timeout=10.0, session_id=client.session_id)
    try:
        # No new subscribe: the first client's server-side subscriptions follow the session.
        heir.add_listener(endpoint.id, "IceCandidateFound", heir_log.recorder("IceCandidateFound"))
        heir.add_listener(endpoint.id, "IceGatheringDone", heir_log.recorder("IceGatheringDone"))
        heir.connect()
        assert heir.session_id == client.session_id
        heir.proxy(endpoint.id, WebRtcEndpoint).invoke("gatherCandidates")
        _wait_for(lambda: "IceGatheringDone" in heir_log.types())
        assert "IceCandidateFound" in heir_log.types()
        assert first_log.types() == []  # the last connection to use the session gets its events
    finally:
        heir.close()


def test_reconnects_to_its_session_after_the_server_drops_the_socket(emulator: EmulatorProcess) -> None:
    reconnects: list[bool] = []
    lost: list[str] = []
    client = KurentoClient(
        emulator.url,
        request_timeout=10.0,
        on_reconnected=reconnects.append,
        on_session_lost=lambda: lost.append("lost"),
    )
    try:
        endpoint = client.create_pipeline().create_webrtc_endpoint()
        log = EventLog()
        endpoint.subscribe("IceCandidateFound", log.recorder("IceCandidateFound"))
        endpoint.subscribe("IceGatheringDone", log.recorder("IceGatheringDone"))
        endpoint.process_offer(OFFER)
        session = client.session_id
        assert emulator_control.sessions(emulator.url)[session]["resumed"] == 0

        # The emulator aborts the TCP connection (no close frame) and keeps the session.
        assert emulator_control.drop_connections(emulator.url, session) == 1
        _wait_for(lambda: reconnects == [True])
        assert client.session_id == session and lost == []
        state = emulator_control.sessions(emulator.url)[session]
        # The new socket resumed the session with `connect {sessionId}` and is bound to it.
        assert state["resumed"] == 1 and state["bound"]

        # The subscriptions made before the drop deliver on the new socket, without a new subscribe.
        endpoint.gather_candidates()
        _wait_for(lambda: "IceGatheringDone" in log.types())
        assert "IceCandidateFound" in log.types()
        assert endpoint.get_local_session_descriptor().startswith("v=0")  # same objects, same session
    finally:
        client.close()


def test_restart_loses_the_session_and_recovers() -> None:
    server = _start_emulator()
    calls: list[Any] = []
    kurento = KurentoClient(
        server.url,
        request_timeout=10.0,
        on_session_lost=lambda: calls.append("lost"),
        on_reconnected=calls.append,
    )
    try:
        kurento.create_pipeline()
        old_session = kurento.session_id
        server.kill()
        server.start()  # same port, empty state
        _wait_for(lambda: calls == ["lost", False], timeout=20)
        pipeline = kurento.create_pipeline()
        assert kurento.session_id not in (None, old_session)
        assert pipeline.id in kurento.server_manager.get_pipelines()
    finally:
        kurento.close()
        server.kill()


def test_a_request_uses_a_server_that_came_back_without_waiting_out_the_back_off(monkeypatch, caplog) -> None:
    # A reconnector that would sleep a minute between attempts: only the request can wake it.
    monkeypatch.setattr(kurento_client, "BACKOFF_FIRST", 60.0)
    caplog.set_level(logging.INFO, logger="kurento.client")
    server = _start_emulator()
    kurento = KurentoClient(server.url, request_timeout=10.0)
    try:
        kurento.create_pipeline()
        server.kill()
        _wait_for(lambda: "reconnect to" in caplog.text)  # the first attempt failed: the back-off runs
        server.start()  # same port, a restarted server
        pipeline = kurento.create_pipeline()
        assert pipeline.id in kurento.server_manager.get_pipelines()
    finally:
        kurento.close()
        server.kill()


def test_many_threads_one_client(client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                endpoint = pipeline.create_webrtc_endpoint()
                endpoint.process_offer(OFFER)
                endpoint.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert isinstance(client.get_object(pipeline.id), MediaObject)


def test_many_requests_share_one_round_trip_and_keep_their_own_errors(emulator: EmulatorProcess):
    client = KurentoClient(emulator.url)
    try:
        pipeline = client.create_pipeline()
        endpoint = pipeline.create_webrtc_endpoint()
        results = client.request_many(
            [
                ("invoke", {"object": endpoint.id, "operation": "getName"}),
                ("describe", {"object": "nope_kurento.MediaPipeline"}),
                ("invoke", {"object": "manager_ServerManager", "operation": "getUsedMemory"}),
            ]
        )
        assert isinstance(results[0]["value"], str)
        assert isinstance(results[1], ObjectNotFound)
        assert results[2]["value"] > 0
        seen: list[str] = []
        ids = endpoint.subscribe_many(
            {"IceCandidateFound": lambda d: seen.append("candidate"), "IceGatheringDone": lambda d: seen.append("done")}
        )
        assert set(ids) == {"IceCandidateFound", "IceGatheringDone"} and all(ids.values())
        endpoint.process_offer(OFFER)
        endpoint.gather_candidates()
        deadline = time.monotonic() + 5
        while "done" not in seen:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "candidate" in seen
    finally:
        client.close()


def test_an_offer_with_its_candidates_takes_two_round_trips(emulator: EmulatorProcess, client: KurentoClient) -> None:
    """The shape issue 13 asks of an offer (a re-offer replacing its endpoint): one transaction
    (create, subscribe x3, processOffer) and one batch (addIceCandidate x N, gatherCandidates, and
    release of the endpoint replaced), counted by the client itself."""
    pipeline = client.create_pipeline()
    old = pipeline.create_webrtc_endpoint()
    events: list[str] = []
    before = client.stats
    tx = client.transaction()
    ep = tx.create("WebRtcEndpoint", mediaPipeline=pipeline)
    for event in ("IceCandidateFound", "IceGatheringDone", "MediaStateChanged"):
        tx.subscribe(ep, event, lambda data, event=event: events.append(event))
    answer = tx.invoke(ep, "processOffer", offer=OFFER)
    tx.commit()
    endpoint = tx.resolve(ep, WebRtcEndpoint)
    candidates = [
        (
            "invoke",
            {
                "object": endpoint.id,
                "operation": "addIceCandidate",
                "operationParams": {"candidate": {**c, "__module__": "kurento", "__type__": "IceCandidate"}},
            },
        )
        for c in CANDIDATES
    ]
    results = client.request_many(
        [
            *candidates,
            ("invoke", {"object": endpoint.id, "operation": "gatherCandidates"}),
            ("release", {"object": old.id}),
        ]
    )
    assert not any(isinstance(r, Exception) for r in results)
    after = client.stats
    assert after.round_trips - before.round_trips == 2
    assert after.requests - before.requests == 5 + len(CANDIDATES) + 2
    assert str(tx.value(answer)).startswith("v=0")
    _wait_for(lambda: "IceGatheringDone" in events)
    assert "IceCandidateFound" in events
    received = emulator_control.remote_candidates(emulator.url, endpoint.id)
    assert [c["candidate"] for c in received] == [c["candidate"] for c in CANDIDATES]
    assert pipeline.invoke("getChildren") == [endpoint.id]
