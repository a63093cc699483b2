"""KurentoClient against the real KMS emulator run in this process: real sockets, real threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kurento import (
    AlreadyNegotiated,
    KurentoClient,
    KurentoUnavailable,
    MediaObject,
    MediaPipeline,
    ObjectNotFound,
    RequestNotSent,
    WebRtcEndpoint,
)
from tests.support.emulator import InProcessEmulator
from tests.unit.kurento.conftest import MEMORY_OFFSET_KIB

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[3]
OFFER = (ROOT / "tests" / "fixtures" / "browser-sdp" / "chromium-publish.sdp").read_text()
# Events a WebRtcEndpoint declares, raised on demand through the emulator's test control.
EVENT_A, EVENT_B = "MediaStateChanged", "ConnectionStateChanged"


@pytest.fixture
def client(kms: InProcessEmulator) -> Iterator[KurentoClient]:
    kurento = KurentoClient(kms.url, request_timeout=5.0)
    yield kurento
    kurento.close()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_connects_lazily_and_learns_the_session(kms: InProcessEmulator, client: KurentoClient) -> None:
    assert kms.connections == 0 and client.session_id is None
    pipeline = client.create_pipeline()
    assert isinstance(pipeline, MediaPipeline) and pipeline.id.endswith("_kurento.MediaPipeline")
    assert client.session_id in kms.control("sessions")["sessions"]
    first, second, create = kms.requests[:3]
    assert first["params"] == {"interval": 240000} and first["method"] == "ping"
    assert second["method"] == "connect" and "params" not in second
    assert create["params"]["sessionId"] == client.session_id


def test_session_id_is_injected_into_every_request(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    pipeline.create_webrtc_endpoint(recvonly=True)
    client.server_manager.get_info()
    after_connect = kms.requests[2:]
    assert {r["params"]["sessionId"] for r in after_connect} == {client.session_id}
    assert after_connect[1]["params"]["constructorParams"] == {"mediaPipeline": pipeline.id, "recvonly": True}


def test_session_follows_a_result_with_a_different_session(kms: InProcessEmulator, client: KurentoClient) -> None:
    client.connect()
    client.request("describe", {"object": "manager_ServerManager", "sessionId": "other"})
    assert client.session_id == "other"
    client.request("ping")  # a pong never changes the session
    assert client.session_id == "other"


def test_ids_are_unique_across_reconnects(kms: InProcessEmulator, client: KurentoClient) -> None:
    client.create_pipeline()
    kms.control("dropConnections")
    wait_for(lambda: kms.connections == 2 and client.connected)
    client.create_pipeline()
    ids = [r["id"] for r in kms.requests]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)


def test_request_times_out(kms: InProcessEmulator) -> None:
    client = KurentoClient(kms.url, request_timeout=0.3)
    pipeline = client.create_pipeline()
    kms.control("withholdResponses", operation="getName")
    started = time.monotonic()
    with pytest.raises(KurentoUnavailable, match="Request has timed out"):
        pipeline.invoke("getName")
    assert 0.25 < time.monotonic() - started < 2
    # The client is still usable, and snake_case parameters reach KMS in camelCase.
    pipeline.invoke("setSendTagsInEvents", send_tags_in_events=True)
    assert kms.requests[-1]["params"]["operationParams"] == {"sendTagsInEvents": True}
    assert pipeline.invoke("getSendTagsInEvents") is True
    client.close()


def test_errors_map_to_exceptions(client: KurentoClient) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        client.get_object("nope")
    assert caught.value.code == 40101 and caught.value.type == "MEDIA_OBJECT_NOT_FOUND"
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    assert endpoint.process_offer(OFFER).startswith("v=0")
    with pytest.raises(AlreadyNegotiated):
        endpoint.process_offer(OFFER)


def test_get_object_builds_the_described_class(client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    proxy = client.get_object(endpoint.id)
    assert type(proxy) is WebRtcEndpoint and proxy == endpoint
    assert type(client.proxy(endpoint.id)) is MediaObject


def test_events_before_the_response_are_delivered(client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    received: list[tuple[str, dict[str, Any]]] = []
    endpoint.subscribe("MediaSessionStarted", lambda data: received.append(("started", data)))
    endpoint.subscribe("IceCandidateFound", lambda data: received.append(("found", data)))
    endpoint.subscribe("IceGatheringDone", lambda data: received.append(("done", data)))
    endpoint.process_offer(OFFER)  # the emulator writes MediaSessionStarted before this call's response
    endpoint.gather_candidates()
    wait_for(lambda: received[-1:] and received[-1][0] == "done")
    kinds = [kind for kind, _ in received]
    assert kinds[0] == "started" and set(kinds[1:-1]) == {"found"} and len(kinds) > 2
    assert received[1][1]["candidate"]["__type__"] == "IceCandidate"


def test_events_are_routed_by_object_and_type(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    first, second = pipeline.create_webrtc_endpoint(), pipeline.create_webrtc_endpoint()
    got: dict[str, list[Any]] = {"a1": [], "a2": [], "b": [], "other_type": []}
    first.subscribe(EVENT_A, lambda data: got["a1"].append(data["n"]))
    first.subscribe(EVENT_A, lambda data: got["a2"].append(data["n"]))  # twice on the same (object, type)
    first.subscribe(EVENT_B, lambda data: got["b"].append(data["n"]))
    second.subscribe(EVENT_A, lambda data: got["other_type"].append(data["n"]))
    kms.control("raiseEvent", object=first.id, type=EVENT_A, data={"n": 1})
    kms.control("raiseEvent", object=first.id, type=EVENT_B, data={"n": 2})
    wait_for(lambda: got["b"] == [2])
    assert got == {"a1": [1], "a2": [1], "b": [2], "other_type": []}


def test_callbacks_run_off_the_reader_thread_and_may_call_kms(kms: InProcessEmulator, client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    answers: list[Any] = []

    def on_event(data: dict[str, Any]) -> None:
        if data["n"] == 0:
            raise RuntimeError("a broken callback must not stop dispatching")
        answers.append((threading.current_thread().name, data["n"], endpoint.invoke("getId")))

    endpoint.subscribe(EVENT_A, on_event)
    kms.control("raiseEvent", object=endpoint.id, type=EVENT_A, data={"n": 0})
    kms.control("raiseEvent", object=endpoint.id, type=EVENT_A, data={"n": 1})
    wait_for(lambda: len(answers) == 1)
    assert answers == [("kurento-events", 1, endpoint.id)]


def test_unsubscribe_stops_delivery(kms: InProcessEmulator, client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    received: list[Any] = []
    subscription = endpoint.subscribe(EVENT_A, received.append)
    endpoint.unsubscribe(subscription)
    assert kms.control("raiseEvent", object=endpoint.id, type=EVENT_A, data={"n": 1})["delivered"] == 0
    endpoint.invoke("getId")  # let any stray event reach the dispatcher
    time.sleep(0.1)
    assert received == [] and kms.methods()[-2] == "unsubscribe"


def test_reconnect_resumes_the_session(kms: InProcessEmulator) -> None:
    reconnected: list[bool] = []
    client = KurentoClient(kms.url, request_timeout=5.0, on_reconnected=reconnected.append)
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    received: list[Any] = []
    endpoint.subscribe(EVENT_A, received.append)
    session_id = client.session_id
    kms.control("dropConnections")
    wait_for(lambda: reconnected == [True])
    assert kms.requests[-2]["method"] == "ping" and "params" not in kms.requests[-2]
    assert kms.requests[-1] == {**kms.requests[-1], "method": "connect", "params": {"sessionId": session_id}}
    # The old server-side subscription still delivers.
    kms.control("raiseEvent", object=endpoint.id, type=EVENT_A, data={"n": 1})
    wait_for(lambda: len(received) == 1)
    assert client.session_id == session_id
    client.close()


def test_requests_during_a_reconnect_wait_for_the_new_socket(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    kms.control("dropConnections", graceful=True)
    # Issued at once, before (or while) the reconnect happens; it must not fail.
    assert pipeline.invoke("getId") == pipeline.id


def test_lost_session_is_reported(kms: InProcessEmulator) -> None:
    calls: list[Any] = []
    client = KurentoClient(
        kms.url,
        request_timeout=5.0,
        on_session_lost=lambda: calls.append("lost"),
        on_reconnected=calls.append,
    )
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    endpoint.subscribe(EVENT_A, lambda data: calls.append("event"))
    old_session = client.session_id
    kms.control("expireSession", sessionId=old_session)  # as after a KMS restart
    wait_for(lambda: calls == ["lost", False])
    assert client.session_id not in (None, old_session)  # a fresh session, not the dead one
    assert client.create_pipeline().id
    assert client._listeners == {}  # local routes of dead subscriptions are gone
    client.close()


def test_takeover_with_session_id(kms: InProcessEmulator, client: KurentoClient) -> None:
    endpoint = client.create_pipeline().create_webrtc_endpoint()
    endpoint.subscribe(EVENT_A, lambda data: None)
    first_ids = [r["id"] for r in kms.requests]
    heir = KurentoClient(kms.url, request_timeout=5.0, session_id=client.session_id)
    received: list[Any] = []
    heir.add_listener(endpoint.id, EVENT_A, received.append)
    heir.connect()
    assert kms.requests[-1]["params"] == {"sessionId": client.session_id}
    kms.control("raiseEvent", object=endpoint.id, type=EVENT_A, data={"n": 7})
    wait_for(lambda: len(received) == 1)
    assert received[0]["n"] == 7
    # Same session, new counter: ids must not collide, or the request cache would replay old answers.
    assert min(r["id"] for r in kms.requests[len(first_ids) :]) > max(first_ids)
    heir.close()


def test_takeover_of_an_unknown_session_fails(kms: InProcessEmulator) -> None:
    from kurento import InvalidSession

    heir = KurentoClient(kms.url, session_id="gone")
    with pytest.raises(InvalidSession):
        heir.connect()
    heir.close()


def test_unreachable_server_is_unavailable() -> None:
    client = KurentoClient("ws://127.0.0.1:9/kurento", request_timeout=1.0)
    with pytest.raises(KurentoUnavailable):
        client.create_pipeline()
    client.close()


def test_closed_client_refuses_requests(client: KurentoClient) -> None:
    client.connect()
    client.close()
    with pytest.raises(KurentoUnavailable, match="closed"):
        client.request("ping")


def test_many_threads_share_one_client(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    for n in range(50):
        pipeline.invoke("addTag", key=f"worker{n}", value=str(n))
    errors: list[BaseException] = []
    mismatches: list[tuple[int, int, Any]] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                answer = pipeline.invoke("getTag", key=f"worker{n}")
                if answer != str(n):
                    mismatches.append((n, i, answer))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and mismatches == []
    ids = [r["id"] for r in kms.requests]
    assert len(ids) == len(set(ids)) == 3 + 50 + 1000
    assert kms.connections == 1


def test_server_manager_and_element_calls(kms: InProcessEmulator, client: KurentoClient) -> None:
    manager = client.server_manager
    assert manager.id == "manager_ServerManager" and kms.connections == 0  # no round trip
    assert manager.get_info()["version"] == "7.3.0"
    assert manager.get_used_memory() > MEMORY_OFFSET_KIB and manager.get_cpu_count() == os.cpu_count()
    assert 0.0 <= manager.get_used_cpu(10) <= 100.0 * (os.cpu_count() or 1)
    assert manager.get_sessions() == [client.session_id]
    pipeline = client.create_pipeline()
    assert manager.get_pipelines() == [pipeline.id]
    source, sink = pipeline.create_webrtc_endpoint(), pipeline.create_webrtc_endpoint()
    source.connect(sink, "VIDEO")
    source.disconnect(sink)
    source.add_ice_candidate("candidate:1 1 UDP 1 10.0.0.2 5000 typ host", "0", 0)
    pipeline.release()
    pipeline.release()  # releasing an unknown id succeeds
    invokes = [r["params"] for r in kms.requests if r["method"] == "invoke"][-3:]
    assert invokes[0]["operationParams"] == {"sink": sink.id, "mediaType": "VIDEO"}
    assert invokes[1]["operationParams"] == {"sink": sink.id}
    assert invokes[2]["operationParams"]["candidate"]["__type__"] == "IceCandidate"
    with pytest.raises(ValueError):
        source.connect(sink, "SMELL")


GEVENT_SCRIPT = """
import sys
from gevent import monkey
monkey.patch_all()
import gevent
from kurento import KurentoClient
from tests.support import emulator_control

client = KurentoClient(sys.argv[1], request_timeout=5.0)
endpoint = client.create_pipeline().create_webrtc_endpoint()
for n in range(200):
    endpoint.invoke("addTag", key=str(n), value=f"tag{n}")
events = []
endpoint.subscribe("MediaStateChanged", lambda data: events.append(endpoint.invoke("getTag", key=str(data["n"]))))
jobs = [gevent.spawn(endpoint.invoke, "getTag", key=str(n)) for n in range(200)]
gevent.joinall(jobs, timeout=10, raise_error=True)
assert [job.value for job in jobs] == [f"tag{n}" for n in range(200)]
emulator_control.raise_event(sys.argv[1], endpoint.id, "MediaStateChanged", {"n": 5})
with gevent.Timeout(5):
    while not events:
        gevent.sleep(0.01)
assert events == ["tag5"], events
client.close()
print("ok")
"""


def test_works_under_gevent_monkey_patching(kms: InProcessEmulator) -> None:
    # A separate process: monkey patching this one would also patch the emulator's thread.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, kms.url], capture_output=True, text=True, timeout=25, cwd=ROOT
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_server_restart_on_the_same_port(kms: InProcessEmulator, kms_factory: Any) -> None:
    calls: list[Any] = []
    client = KurentoClient(
        kms.url, request_timeout=10.0, on_session_lost=lambda: calls.append("lost"), on_reconnected=calls.append
    )
    client.create_pipeline()
    old_session = client.session_id
    port = int(kms.url.split(":")[2].split("/")[0])
    kms.stop()
    created: list[MediaPipeline] = []
    waiting = threading.Thread(target=lambda: created.append(client.create_pipeline()))
    waiting.start()  # issued while KMS is down: it must wait, not fail
    time.sleep(0.8)  # several backoff rounds
    replacement = kms_factory(port)
    waiting.join(10)
    assert len(created) == 1 and replacement.emulator.registry.get(created[0].id) is not None
    wait_for(lambda: calls == ["lost", False])
    assert replacement.methods()[:5] == ["ping", "connect", "ping", "connect", "create"]
    assert replacement.requests[1]["params"] == {"sessionId": old_session}  # answered with 40007
    assert client.session_id not in (None, old_session)
    client.close()


def test_keep_alive_pings_without_params(kms: InProcessEmulator) -> None:
    client = KurentoClient(kms.url, request_timeout=5.0, ping_interval=0.05)
    client.connect()
    wait_for(lambda: kms.methods().count("ping") >= 3)
    pings = [r for r in kms.requests if r["method"] == "ping"]
    assert pings[0]["params"] == {"interval": 240000}
    assert all("params" not in ping for ping in pings[1:])
    client.close()


def test_request_in_flight_when_the_socket_drops_fails(kms: InProcessEmulator, client: KurentoClient) -> None:
    pipeline = client.create_pipeline()
    kms.control("withholdResponses", operation="getName")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            pipeline.invoke("getName")
        except KurentoUnavailable as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: "getName" in [r.get("params", {}).get("operation") for r in kms.requests])
    kms.control("dropConnections")
    caller.join(5)
    assert [str(exc) for exc in outcome] == ["Connection lost"]
    assert pipeline.invoke("getId") == pipeline.id  # and the client carries on after reconnecting


def test_forget_object_drops_the_routes_of_an_object_and_its_children(
    kms: InProcessEmulator, client: KurentoClient
) -> None:
    pipeline = client.create_pipeline()
    released, kept = pipeline.create_webrtc_endpoint(), client.create_pipeline().create_webrtc_endpoint()
    received: list[Any] = []
    released.subscribe_many({EVENT_A: received.append, EVENT_B: received.append})
    kept.subscribe(EVENT_A, received.append)
    pipeline.subscribe("Error", received.append)
    pipeline.release()
    client.forget_object(pipeline.id)  # the endpoint went with its pipeline: its routes too
    assert {object_id for object_id, _ in client._listeners} == {kept.id}
    client.forget_object(kept.id)
    assert client._listeners == {}


def test_a_request_that_never_left_says_so(kms: InProcessEmulator) -> None:
    unreachable = KurentoClient("ws://127.0.0.1:9/kurento", request_timeout=1.0)
    with pytest.raises(RequestNotSent):
        unreachable.create_pipeline()
    unreachable.close()
    # Sent, then unanswered until the deadline: KMS may have run it.
    client = KurentoClient(kms.url, request_timeout=0.3)
    pipeline = client.create_pipeline()
    kms.control("withholdResponses", operation="getName")
    with pytest.raises(KurentoUnavailable) as timed_out:
        pipeline.invoke("getName")
    assert not isinstance(timed_out.value, RequestNotSent)
    client.close()
