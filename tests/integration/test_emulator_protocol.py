"""kms_emulator against raw JSON-RPC frames: every quirk of kurento-protocol.md section 8.

The emulator runs as a subprocess (signaling mode) and is driven with websockets' sync client, not with the
project's Kurento client, so these tests pin the wire format itself.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "browser-sdp"
OFFER = (FIXTURES / "chromium-publish.sdp").read_text()
CANDIDATES = json.loads((FIXTURES / "chromium-publish.candidates.json").read_text())
LOG_DIR = Path(tempfile.mkdtemp(prefix="emulator-protocol-tests-"))
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def start_emulator(*args: str) -> EmulatorProcess:
    """A signaling-mode emulator subprocess with extra command-line options."""
    return EmulatorProcess(LOG_DIR, "signaling", extra_args=args).start()


class Rpc:
    """One raw websocket; `call` sends a request and returns the response, keeping events aside."""

    def __init__(self, url: str) -> None:
        self.ws: ClientConnection = connect(url).__enter__()
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []

    def send(self, message: Any) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = self.ws.recv(timeout)
        self.raw.append(str(frame))
        return json.loads(frame)

    def response(self, request_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = self.receive(timeout)
            if message.get("method") == "onEvent":
                self.events.append(message)
            elif message.get("id") == request_id:
                return message

    def call(self, method: str, params: dict[str, Any] | None = None, request_id: Any = None) -> dict[str, Any]:
        if request_id is None:
            request_id, self.next_id = self.next_id, self.next_id + 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self.send(request)
        return self.response(request_id)

    def value(self, method: str, params: dict[str, Any] | None = None) -> Any:
        response = self.call(method, params)
        assert "result" in response, response
        return response["result"].get("value")

    def invoke(self, obj: str, operation: str, **operation_params: Any) -> Any:
        params: dict[str, Any] = {"object": obj, "operation": operation}
        if operation_params:
            params["operationParams"] = operation_params
        return self.value("invoke", params)

    def wait_event(self, event_type: str, obj: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                value = event["params"]["value"]
                if value["type"] == event_type and obj in (None, value["object"]):
                    self.events.remove(event)
                    return value
            self.events.append(self.receive(max(deadline - time.monotonic(), 0.01)))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    server = start_emulator()
    yield server
    server.stop()


@pytest.fixture
def rpc(emulator: EmulatorProcess) -> Iterator[Rpc]:
    client = Rpc(emulator.url)
    yield client
    client.close()


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    assert "error" in response and "result" not in response, response
    return response["error"]


def new_pipeline_and_endpoint(rpc: Rpc) -> tuple[str, str]:
    pipeline = rpc.value("create", {"type": "MediaPipeline", "properties": {}})
    endpoint = rpc.value("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline}})
    return pipeline, endpoint


# -- transport -------------------------------------------------------------------------------------------------
def test_wrong_path_is_closed_with_invalid_path(emulator: EmulatorProcess) -> None:
    ws = connect(emulator.url.replace("/kurento", "/other")).__enter__()
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1002, "Invalid path")


def test_control_path_exists_only_with_test_control(emulator: EmulatorProcess) -> None:
    # Without --test-control the emulator serves /kurento alone, as KMS does.
    ws = connect(emulator.url.replace("/kurento", "/_emulator/control")).__enter__()
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.reason == "Invalid path"
    server = start_emulator("--test-control")
    try:
        client = Rpc(server.url)
        pipeline, endpoint = new_pipeline_and_endpoint(client)
        session = client.call("ping")["result"]["sessionId"]
        candidate = {"candidate": CANDIDATES[0]["candidate"], "sdpMid": "0", "sdpMLineIndex": 0}
        client.invoke(endpoint, "addIceCandidate", candidate=candidate)
        with connect(server.url.replace("/kurento", "/_emulator/control")) as control:
            control.send(json.dumps({"command": "endpoint", "object": endpoint}))
            assert json.loads(control.recv(5)) == {
                "ok": True,
                "remoteCandidates": [candidate],
                "negotiated": False,
                "gatheringStarted": False,
            }
            control.send(json.dumps({"command": "sessions"}))
            assert json.loads(control.recv(5))["sessions"][session] == {"bound": True, "resumed": 0, "objects": 2}
            control.send(json.dumps({"command": "dropConnections", "sessionId": session}))
            assert json.loads(control.recv(5)) == {"ok": True, "dropped": 1}
            with pytest.raises(ConnectionClosed):
                client.receive()
            # The session and its objects outlive the socket; connect {sessionId} resumes them.
            again = Rpc(server.url)
            again.next_id = 1000  # ids must not repeat within a session (request cache)
            assert again.call("connect", {"sessionId": session})["result"]["sessionId"] == session
            assert again.invoke(endpoint, "getMediaPipeline") == pipeline
            # raiseEvent goes where a real event goes: to the bound connection of each subscribed session.
            again.value("subscribe", {"object": endpoint, "type": "IceComponentStateChanged"})
            control.send(
                json.dumps(
                    {
                        "command": "raiseEvent",
                        "object": endpoint,
                        "type": "IceComponentStateChanged",
                        "data": {"streamId": 1, "componentId": 1, "state": "FAILED"},
                    }
                )
            )
            assert json.loads(control.recv(5)) == {"ok": True, "delivered": 1}
            event = again.wait_event("IceComponentStateChanged", endpoint)
            assert event["data"]["state"] == "FAILED" and event["data"]["source"] == endpoint
            control.send(json.dumps({"command": "raiseEvent", "object": pipeline, "type": "IceCandidateFound"}))
            assert json.loads(control.recv(5))["ok"] is False  # a pipeline raises no ICE events
            control.send(json.dumps({"command": "expireSession", "sessionId": session}))
            assert json.loads(control.recv(5)) == {"ok": True, "dropped": 1}
            third = Rpc(server.url)
            third.next_id = 2000
            assert error_of(third.call("connect", {"sessionId": session}))["code"] == 40007
            assert error_of(third.call("describe", {"object": pipeline}))["code"] == 40101
            third.close()
            control.send(json.dumps({"command": "nope"}))
            assert json.loads(control.recv(5)) == {"ok": False, "error": "unknown command 'nope'"}
    finally:
        server.stop()


def test_query_string_is_ignored(emulator: EmulatorProcess) -> None:
    client = Rpc(emulator.url + "?access_token=abc")
    assert client.call("ping")["result"] == {"value": "pong"}
    client.close()


def test_ping_without_session_has_no_session_id_and_sorted_keys(rpc: Rpc) -> None:
    rpc.send('{"jsonrpc":"2.0","id":0,"method":"ping","params":{"interval":5000}}')
    rpc.response(0)
    assert rpc.raw[-1] == '{"id":0,"jsonrpc":"2.0","result":{"value":"pong"}}'


def test_ping_after_binding_carries_session_id(rpc: Rpc) -> None:
    session = rpc.call("connect")["result"]["sessionId"]
    assert rpc.call("ping")["result"] == {"sessionId": session, "value": "pong"}


def test_parse_error(rpc: Rpc) -> None:
    rpc.send("{not json")
    message = rpc.receive()
    assert message == {
        "error": {"code": -32700, "data": {"type": "PARSE_ERROR"}, "message": "Parse error."},
        "id": None,
        "jsonrpc": "2.0",
    }


def test_batch_is_invalid_request_with_null_id(rpc: Rpc) -> None:
    rpc.send('[{"jsonrpc":"2.0","id":1,"method":"ping"}]')
    rpc.receive()
    assert rpc.raw[-1] == '{"error":{"code":-32600,"message":"Invalid JSON-RPC request."},"id":null,"jsonrpc":"2.0"}'


def test_unknown_method(rpc: Rpc) -> None:
    assert error_of(rpc.call("frobnicate", {})) == {"code": -32601, "message": "Method not found."}


def test_string_ids_are_echoed(rpc: Rpc) -> None:
    assert rpc.call("ping", request_id="abc")["id"] == "abc"


# -- sessions --------------------------------------------------------------------------------------------------
def test_session_created_lazily_bound_and_injected(rpc: Rpc) -> None:
    create = rpc.call("create", {"type": "MediaPipeline", "properties": {}})
    session = create["result"]["sessionId"]
    assert re.fullmatch(UUID, session)
    assert re.fullmatch(UUID + "_kurento.MediaPipeline", create["result"]["value"])
    # no sessionId in the next request: the bound one is injected
    describe = rpc.call("describe", {"object": create["result"]["value"]})
    assert describe["result"]["sessionId"] == session
    assert rpc.raw[-1].startswith(
        '{"id":1,"jsonrpc":"2.0","result":{"hierarchy":["kurento.MediaObject"],'
        '"qualifiedType":"kurento.MediaPipeline","sessionId":"'
    )


def test_connect_semantics(emulator: EmulatorProcess, rpc: Rpc) -> None:
    first = rpc.call("connect")["result"]
    assert set(first) == {"serverId", "sessionId"}
    other = Rpc(emulator.url)
    other.next_id = 1000
    again = other.call("connect", {"sessionId": first["sessionId"]})["result"]
    assert again == first
    assert error_of(other.call("connect", {"sessionId": "nope"})) == {
        "code": 40007,
        "data": {"type": "INVALID_SESSION"},
        "message": "Invalid session",
    }
    other.close()


def test_events_follow_the_connection_that_reconnects(emulator: EmulatorProcess, rpc: Rpc) -> None:
    pipeline, endpoint = new_pipeline_and_endpoint(rpc)
    session = rpc.call("ping")["result"]["sessionId"]
    rpc.value("subscribe", {"object": endpoint, "type": "IceCandidateFound"})
    rpc.invoke(endpoint, "processOffer", offer=OFFER)
    takeover = Rpc(emulator.url)
    takeover.next_id = 1000  # ids must not be reused within a session, or the request cache replays them
    assert takeover.call("connect", {"sessionId": session})["result"]["sessionId"] == session
    takeover.invoke(endpoint, "gatherCandidates")
    event = takeover.wait_event("IceCandidateFound", endpoint)
    assert event["data"]["candidate"]["__type__"] == "IceCandidate"
    # the old connection is no longer bound: it gets nothing
    with pytest.raises(TimeoutError):
        rpc.ws.recv(0.3)
    takeover.close()


def test_events_are_routed_by_session_not_by_object(emulator: EmulatorProcess, rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    other = Rpc(emulator.url)
    other.value("subscribe", {"object": endpoint, "type": "IceGatheringDone"})
    rpc.invoke(endpoint, "processOffer", offer=OFFER)
    rpc.invoke(endpoint, "gatherCandidates")
    assert other.wait_event("IceGatheringDone", endpoint)["object"] == endpoint
    with pytest.raises(TimeoutError):
        rpc.ws.recv(0.3)  # rpc's session never subscribed
    other.close()


def test_double_subscription_gives_two_ids_one_delivery(rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    first = rpc.value("subscribe", {"object": endpoint, "type": "IceGatheringDone"})
    second = rpc.value("subscribe", {"object": endpoint, "type": "IceGatheringDone"})
    assert first != second
    rpc.invoke(endpoint, "processOffer", offer=OFFER)
    rpc.invoke(endpoint, "gatherCandidates")
    rpc.wait_event("IceGatheringDone", endpoint)
    with pytest.raises(TimeoutError):
        rpc.wait_event("IceGatheringDone", endpoint, timeout=0.3)


def test_request_cache_replays_response(rpc: Rpc) -> None:
    first = rpc.call("create", {"type": "MediaPipeline"}, request_id=100)
    session = first["result"]["sessionId"]
    replay = rpc.call("create", {"type": "MediaPipeline", "sessionId": session}, request_id=100)
    assert replay == first
    pipelines = rpc.invoke("manager_ServerManager", "getPipelines")
    assert pipelines.count(first["result"]["value"]) == 1
    fresh = rpc.call("create", {"type": "MediaPipeline"}, request_id=101)
    assert fresh["result"]["value"] != first["result"]["value"]


def test_invalid_session_after_restart() -> None:
    server = start_emulator()
    client = Rpc(server.url)
    session = client.call("connect")["result"]["sessionId"]
    client.close()
    server.stop()
    server = start_emulator()
    client = Rpc(server.url)
    assert error_of(client.call("connect", {"sessionId": session}))["code"] == 40007
    # like KMS, the next request naming that session recreates it under the same id
    create = client.call("create", {"type": "MediaPipeline", "sessionId": session})
    assert create["result"]["sessionId"] == session
    client.close()
    server.stop()


def test_gc_collects_unbound_sessions_and_their_objects() -> None:
    server = start_emulator("--gc-period", "0.3")
    client = Rpc(server.url)
    pipeline, _ = new_pipeline_and_endpoint(client)
    client.close()
    watcher = Rpc(server.url)
    time.sleep(1.2)
    assert pipeline not in watcher.invoke("manager_ServerManager", "getPipelines")
    # a bound session survives
    kept, _ = new_pipeline_and_endpoint(watcher)
    time.sleep(1.2)
    assert kept in watcher.invoke("manager_ServerManager", "getPipelines")
    watcher.close()
    server.stop()


# -- results and errors ----------------------------------------------------------------------------------------
def test_void_invoke_release_and_unsubscribe_shapes(rpc: Rpc) -> None:
    pipeline, endpoint = new_pipeline_and_endpoint(rpc)
    session = rpc.call("ping")["result"]["sessionId"]
    assert rpc.call("invoke", {"object": pipeline, "operation": "setName", "operationParams": {"name": "room"}})[
        "result"
    ] == {"sessionId": session, "value": None}
    assert rpc.raw[-1].endswith(f'"result":{{"sessionId":"{session}","value":null}}}}')
    sub = rpc.value("subscribe", {"object": endpoint, "type": "IceCandidateFound"})
    assert rpc.call("unsubscribe", {"object": endpoint, "subscription": sub})["result"] == {"sessionId": session}
    assert rpc.call("unsubscribe", {"object": endpoint, "subscription": "nope"})["result"] == {"sessionId": session}
    assert rpc.call("release", {"object": pipeline})["result"] == {"sessionId": session}
    assert rpc.call("release", {"object": pipeline})["result"] == {"sessionId": session}
    assert rpc.call("release", {"object": "never-existed"})["result"] == {"sessionId": session}


def test_object_errors(rpc: Rpc) -> None:
    pipeline, endpoint = new_pipeline_and_endpoint(rpc)
    assert error_of(
        rpc.call("invoke", {"object": endpoint, "operation": "foo", "operationParams": {"a": 1, "b": 2}})
    ) == {
        "code": 40008,
        "data": {"type": "MALFORMED_TRANSACTION"},
        "message": "Method 'foo' with 2 parameters not found",
    }
    assert error_of(rpc.call("invoke", {"object": pipeline, "operation": "getChilds"}))["message"] == (
        "Method 'getChilds' with 0 parameters not found"
    )
    assert error_of(rpc.call("create", {"type": "Nope"})) == {
        "code": 40108,
        "data": {"type": "MEDIA_OBJECT_NOT_AVAILABLE"},
        "message": "Factory 'Nope' not found",
    }
    assert error_of(rpc.call("describe", {"object": "nope"})) == {
        "code": 40101,
        "data": {"type": "MEDIA_OBJECT_NOT_FOUND"},
        "message": "Object 'nope' not found",
    }
    assert error_of(rpc.call("describe", {})) == {"code": -32000, "message": "'object' parameter is required"}
    assert error_of(rpc.call("create", {"type": 5})) == {
        "code": -32000,
        "message": "'type' parameter should be a string",
    }
    assert error_of(rpc.call("create", {"type": "WebRtcEndpoint"}))["code"] == 40001
    assert (
        error_of(rpc.call("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": "gone"}}))["code"]
        == 40101
    )
    assert error_of(rpc.call("invoke", {"object": "newref:0", "operation": "getName"}))["code"] == 40109
    assert "sessionId" not in json.dumps(rpc.call("describe", {"object": "nope"}))


def test_unknown_and_removed_events_are_not_supported(rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    for name in (
        "OnIceCandidate",
        "OnIceGatheringDone",
        "IceComponentStateChange",
        "MediaFlowInStateChange",
        "Whatever",
    ):
        assert error_of(rpc.call("subscribe", {"object": endpoint, "type": name})) == {
            "code": 40106,
            "data": {"type": "MEDIA_OBJECT_EVENT_NOT_SUPPORTED"},
            "message": f"Event '{name}' not supported",
        }
    for name in ("IceCandidateFound", "MediaStateChanged", "MediaSessionStarted", "ElementConnected", "Error"):
        assert rpc.value("subscribe", {"object": endpoint, "type": name})
    assert rpc.value("subscribe", {"object": "manager_ServerManager", "type": "ObjectCreated"})


def test_describe_hierarchy(rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    result = rpc.call("describe", {"object": endpoint})["result"]
    assert result["type"] == "WebRtcEndpoint" and result["qualifiedType"] == "kurento.WebRtcEndpoint"
    assert result["hierarchy"] == [
        "kurento.BaseRtpEndpoint",
        "kurento.SdpEndpoint",
        "kurento.SessionEndpoint",
        "kurento.Endpoint",
        "kurento.MediaElement",
        "kurento.MediaObject",
    ]
    manager = rpc.call("describe", {"object": "manager_ServerManager"})["result"]
    assert (manager["type"], manager["hierarchy"]) == ("ServerManager", ["kurento.MediaObject"])


def test_ids_and_media_object_getters(rpc: Rpc) -> None:
    pipeline = rpc.value("create", {"type": "kurento.MediaPipeline"})
    endpoint = rpc.value("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline}})
    passthrough = rpc.value("create", {"type": "PassThrough", "constructorParams": {"mediaPipeline": pipeline}})
    assert re.fullmatch(re.escape(pipeline) + "/" + UUID + "_kurento.WebRtcEndpoint", endpoint)
    assert rpc.invoke(endpoint, "getMediaPipeline") == pipeline
    assert rpc.invoke(endpoint, "getParent") == pipeline
    assert rpc.invoke(pipeline, "getChildren") == [endpoint, passthrough]
    assert isinstance(rpc.invoke(endpoint, "getCreationTime"), int)
    rpc.invoke(endpoint, "setName", name="alice")
    assert rpc.invoke(endpoint, "getName") == "alice"
    rpc.invoke(endpoint, "setMaxVideoSendBandwidth", maxVideoSendBandwidth=900)
    assert rpc.invoke(endpoint, "getMaxVideoSendBandwidth") == 900
    assert rpc.invoke(endpoint, "getStunServerAddress") == ""
    rpc.invoke(endpoint, "addTag", key="k", value="v")
    assert rpc.invoke(endpoint, "getTags") == [{"__module__": "kurento", "__type__": "Tag", "key": "k", "value": "v"}]
    rpc.call("release", {"object": pipeline})
    assert error_of(rpc.call("invoke", {"object": endpoint, "operation": "getName"}))["code"] == 40101


def test_server_manager(rpc: Rpc) -> None:
    info = rpc.invoke("manager_ServerManager", "getInfo")
    assert info["__module__"] == "kurento" and info["__type__"] == "ServerInfo"
    assert (info["type"], info["version"], info["capabilities"]) == ("KMS", "7.3.0", ["transactions"])
    assert {"core", "elements", "filters"} <= {m["name"] for m in info["modules"]}
    memory = rpc.invoke("manager_ServerManager", "getUsedMemory")
    assert isinstance(memory, int) and 10_000 < memory < 4_000_000
    pipeline = rpc.value("create", {"type": "MediaPipeline"})
    assert pipeline in rpc.invoke("manager_ServerManager", "getPipelines")
    session = rpc.call("ping")["result"]["sessionId"]
    assert session in rpc.invoke("manager_ServerManager", "getSessions")
    assert rpc.invoke("manager_ServerManager", "getCpuCount") >= 1
    started = time.monotonic()
    assert isinstance(rpc.invoke("manager_ServerManager", "getUsedCpu", interval=300), float)
    assert time.monotonic() - started >= 0.3
    assert json.loads(rpc.invoke("manager_ServerManager", "getKmd", moduleName="core"))["name"] == "core"
    assert (
        error_of(
            rpc.call(
                "invoke",
                {"object": "manager_ServerManager", "operation": "getKmd", "operationParams": {"moduleName": "x"}},
            )
        )["code"]
        == 40500
    )
    rpc.call("release", {"object": "manager_ServerManager"})
    assert rpc.invoke("manager_ServerManager", "getCpuCount") >= 1


def test_memory_offset_option() -> None:
    server = start_emulator("--memory-offset-kib", "5000000")
    client = Rpc(server.url)
    assert client.invoke("manager_ServerManager", "getUsedMemory") > 5_000_000
    client.close()
    server.stop()


def test_object_created_and_destroyed_events(rpc: Rpc) -> None:
    rpc.value("subscribe", {"object": "manager_ServerManager", "type": "ObjectCreated"})
    rpc.value("subscribe", {"object": "manager_ServerManager", "type": "ObjectDestroyed"})
    pipeline = rpc.value("create", {"type": "MediaPipeline"})
    created = rpc.wait_event("ObjectCreated")
    assert created["data"]["object"] == pipeline and "type" not in created["data"]
    rpc.call("release", {"object": pipeline})
    assert rpc.wait_event("ObjectDestroyed")["data"]["objectId"] == pipeline


# -- negotiation -----------------------------------------------------------------------------------------------
def test_negotiation_state_errors(rpc: Rpc) -> None:
    pipeline, endpoint = new_pipeline_and_endpoint(rpc)
    assert error_of(rpc.call("invoke", {"object": endpoint, "operation": "getLocalSessionDescriptor"}))["code"] == 40202
    assert (
        error_of(rpc.call("invoke", {"object": endpoint, "operation": "getRemoteSessionDescriptor"}))["code"] == 40203
    )
    assert (
        error_of(
            rpc.call("invoke", {"object": endpoint, "operation": "processAnswer", "operationParams": {"answer": OFFER}})
        )["code"]
        == 40209
    )
    assert (
        error_of(
            rpc.call("invoke", {"object": endpoint, "operation": "processOffer", "operationParams": {"offer": "hello"}})
        )["code"]
        == 40201
    )
    assert (
        error_of(
            rpc.call("invoke", {"object": endpoint, "operation": "processOffer", "operationParams": {"offer": 5}})
        )["code"]
        == 40001
    )
    answer = rpc.invoke(endpoint, "processOffer", offer=OFFER)
    assert answer.startswith("v=0\r\n")
    assert rpc.invoke(endpoint, "getLocalSessionDescriptor") == answer
    assert rpc.invoke(endpoint, "getRemoteSessionDescriptor") == OFFER
    for operation, params in (("processOffer", {"offer": OFFER}), ("generateOffer", {})):
        assert error_of(
            rpc.call("invoke", {"object": endpoint, "operation": operation, "operationParams": params})
        ) == {
            "code": 40208,
            "data": {"type": "SDP_END_POINT_ALREADY_NEGOTIATED"},
            "message": "Endpoint already negotiated",
        }
    offerer = rpc.value("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline}})
    offer = rpc.invoke(offerer, "generateOffer")
    assert "a=setup:actpass" in offer
    assert rpc.invoke(offerer, "processAnswer", answer=answer) == offer


def test_full_ice_sequence_with_events(rpc: Rpc) -> None:
    pipeline, publisher = new_pipeline_and_endpoint(rpc)
    viewer = rpc.value("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": pipeline}})
    events = (
        "IceCandidateFound",
        "IceGatheringDone",
        "IceComponentStateChanged",
        "NewCandidatePairSelected",
        "MediaStateChanged",
        "MediaFlowInStateChanged",
        "MediaSessionStarted",
        "ElementConnected",
    )
    for name in events:
        rpc.value("subscribe", {"object": publisher, "type": name})
    # a remote candidate before any SDP is accepted and kept
    rpc.invoke(
        publisher, "addIceCandidate", candidate={"__module__": "kurento", "__type__": "IceCandidate", **CANDIDATES[0]}
    )
    rpc.invoke(publisher, "addIceCandidate", candidate={"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0})
    rpc.invoke(publisher, "connect", sink=viewer)
    rpc.invoke(publisher, "connect", sink=viewer)  # repeated connect is fine (group-call tutorial)
    rpc.invoke(publisher, "processOffer", offer=OFFER)
    assert rpc.wait_event("MediaSessionStarted", publisher)["data"]["type"] == "MediaSessionStarted"
    rpc.invoke(publisher, "gatherCandidates")
    found = rpc.wait_event("IceCandidateFound", publisher)
    data = found["data"]
    assert data["candidate"]["candidate"].startswith("candidate:") and data["candidate"]["sdpMid"] == "0"
    assert data["source"] == publisher and data["tags"] == [] and data["type"] == "IceCandidateFound"
    assert isinstance(data["timestampMillis"], str) and data["timestampMillis"].isdigit()
    rpc.wait_event("IceGatheringDone", publisher)
    rpc.wait_event("NewCandidatePairSelected", publisher)
    assert rpc.wait_event("MediaStateChanged", publisher)["data"]["newState"] == "CONNECTED"
    flow = rpc.wait_event("MediaFlowInStateChanged", publisher)["data"]
    assert flow["state"] == "FLOWING" and flow["mediaType"] in ("AUDIO", "VIDEO")
    sinks = rpc.invoke(publisher, "getSinkConnections")
    assert [c["type"] for c in sinks] == ["AUDIO", "DATA", "VIDEO"]
    assert sinks[0] == {
        "__module__": "kurento",
        "__type__": "ElementConnectionData",
        "sink": viewer,
        "source": publisher,
        "sinkDescription": "default",
        "sourceDescription": "default",
        "type": "AUDIO",
    }
    assert len(rpc.invoke(viewer, "getSourceConnections", mediaType="VIDEO")) == 1
    rpc.invoke(publisher, "disconnect", sink=viewer, mediaType="VIDEO")
    assert [c["type"] for c in rpc.invoke(publisher, "getSinkConnections")] == ["AUDIO", "DATA"]


def test_gather_before_sdp_fails(rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    assert error_of(rpc.call("invoke", {"object": endpoint, "operation": "gatherCandidates"}))["code"] == 40400


def test_send_tags_in_events(rpc: Rpc) -> None:
    _, endpoint = new_pipeline_and_endpoint(rpc)
    rpc.invoke(endpoint, "addTag", key="user", value="bob")
    rpc.invoke(endpoint, "setSendTagsInEvents", sendTagsInEvents=True)
    rpc.value("subscribe", {"object": endpoint, "type": "MediaSessionStarted"})
    rpc.invoke(endpoint, "processOffer", offer=OFFER)
    tags = rpc.wait_event("MediaSessionStarted", endpoint)["data"]["tags"]
    assert tags == [{"__module__": "kurento", "__type__": "Tag", "key": "user", "value": "bob"}]


# -- transactions ----------------------------------------------------------------------------------------------
def test_transaction_with_newref(rpc: Rpc) -> None:
    operations = [
        {"jsonrpc": "2.0", "id": 0, "method": "create", "params": {"type": "MediaPipeline"}},
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "create",
            "params": {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": "newref:0"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "invoke",
            "params": {"object": "newref:1", "operation": "getMediaPipeline"},
        },
    ]
    result = rpc.call("transaction", {"operations": operations})["result"]
    responses = result["value"]
    assert [r["id"] for r in responses] == [0, 1, 2]
    pipeline = responses[0]["result"]["value"]
    assert responses[1]["result"]["value"].startswith(pipeline + "/")
    assert responses[2]["result"]["value"] == pipeline
    assert all(r["result"]["sessionId"] == result["sessionId"] for r in responses)


def test_transaction_errors(rpc: Rpc) -> None:
    # An id that is not its index fails the whole transaction, once that op's turn comes: ops before it ran.
    bad_id = [
        {"jsonrpc": "2.0", "id": 0, "method": "create", "params": {"type": "MediaPipeline"}},
        {"jsonrpc": "2.0", "id": 3, "method": "create", "params": {"type": "MediaPipeline"}},
    ]
    pipelines = len(rpc.invoke("manager_ServerManager", "getPipelines"))
    assert error_of(rpc.call("transaction", {"operations": bad_id})) == {
        "code": 40008,
        "data": {"type": "MALFORMED_TRANSACTION"},
        "message": "Id of request '1' should be '1'",
    }
    assert len(rpc.invoke("manager_ServerManager", "getPipelines")) == pipelines + 1
    # Processing stops at the first failing op; its error keeps the code a single request gets.
    stops = [
        {"jsonrpc": "2.0", "id": 0, "method": "describe", "params": {"object": "nope"}},
        {"jsonrpc": "2.0", "id": 1, "method": "create", "params": {"type": "MediaPipeline"}},
    ]
    responses = rpc.call("transaction", {"operations": stops})["result"]["value"]
    assert responses == [
        {
            "error": {"code": 40101, "data": {"type": "MEDIA_OBJECT_NOT_FOUND"}, "message": "Object 'nope' not found"},
            "id": 0,
            "jsonrpc": "2.0",
        }
    ]
    # A malformed op is that op's error, not the transaction's.
    malformed = [{"id": 0, "method": "create", "params": {"type": "MediaPipeline"}}]
    assert rpc.call("transaction", {"operations": malformed})["result"]["value"] == [
        {"error": {"code": -32600, "message": "Invalid JSON-RPC request."}, "id": 0, "jsonrpc": "2.0"}
    ]
    # A newref to an op without a result (itself, a later one) or not a number fails the transaction.
    forward = [{"jsonrpc": "2.0", "id": 0, "method": "describe", "params": {"object": "newref:0"}}]
    assert error_of(rpc.call("transaction", {"operations": forward}))["message"] == "Result not found on request 0"
    garbage = [{"jsonrpc": "2.0", "id": 0, "method": "describe", "params": {"object": "newref:x"}}]
    assert error_of(rpc.call("transaction", {"operations": garbage}))["message"] == "Invalid index of newref 'x'"
    assert error_of(rpc.call("transaction", {}))["message"] == "'operations' parameter is required"
    assert error_of(rpc.call("transaction", {"operations": {}}))["message"] == (
        "'operations' parameter should be an array"
    )
    assert rpc.call("transaction", {"operations": []})["result"]["value"] == []


def test_newref_outside_a_transaction_is_40109(rpc: Rpc) -> None:
    new_pipeline_and_endpoint(rpc)
    error = error_of(rpc.call("create", {"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": "newref:0"}}))
    assert error["code"] == 40109 and error["data"] == {"type": "MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT"}
    assert error_of(rpc.call("subscribe", {"object": "newref:1", "type": "IceCandidateFound"}))["code"] == 40109


def test_transaction_ops_run_in_the_transactions_session(rpc: Rpc) -> None:
    session = rpc.call("connect")["result"]["sessionId"]
    operations = [
        {"jsonrpc": "2.0", "id": 0, "method": "create", "params": {"type": "MediaPipeline", "sessionId": "other"}},
        {"jsonrpc": "2.0", "id": 1, "method": "release", "params": {"object": "newref:0"}},
        {"jsonrpc": "2.0", "id": 2, "method": "describe", "params": {"object": "newref:1"}},
    ]
    result = rpc.call("transaction", {"operations": operations, "sessionId": session})["result"]
    first, released, described = result["value"]
    assert first["result"]["sessionId"] == released["result"]["sessionId"] == session
    # A release has no value, so newref:1 is null, and describe of a null object is -32000 in KMS.
    assert described["error"]["code"] == -32000
