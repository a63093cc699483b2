"""Pure encode/decode functions and the error-code mapping."""

from __future__ import annotations

import json
import pickle

import pytest

from kurento import AlreadyNegotiated, InvalidSession, KurentoError, KurentoUnavailable, ObjectNotFound, jsonrpc


def test_encode_request_sorts_keys_and_omits_missing_params() -> None:
    assert jsonrpc.encode_request(3, "ping") == '{"id":3,"jsonrpc":"2.0","method":"ping"}'
    encoded = jsonrpc.encode_request(4, "describe", {"object": "x", "sessionId": "s"})
    assert encoded == '{"id":4,"jsonrpc":"2.0","method":"describe","params":{"object":"x","sessionId":"s"}}'


def test_encode_event_matches_kms_shape() -> None:
    message = json.loads(jsonrpc.encode_event("p/e", "IceGatheringDone", {"type": "IceGatheringDone"}))
    assert message == {
        "jsonrpc": "2.0",
        "method": "onEvent",
        "params": {"value": {"data": {"type": "IceGatheringDone"}, "object": "p/e", "type": "IceGatheringDone"}},
    }


def test_decode_round_trips_results_errors_and_events() -> None:
    result = jsonrpc.decode_message(jsonrpc.encode_result(5, {"sessionId": "s", "value": None}))
    assert result == jsonrpc.Response(5, {"sessionId": "s", "value": None}, None)
    error = jsonrpc.decode_message(jsonrpc.encode_error(None, -32600, "Invalid JSON-RPC request."))
    assert error == jsonrpc.Response(None, None, {"code": -32600, "message": "Invalid JSON-RPC request."})
    notification = jsonrpc.decode_message(jsonrpc.encode_event("o", "T", {"a": 1}))
    assert isinstance(notification, jsonrpc.Request) and notification.id is None
    assert jsonrpc.decode_event(notification) == jsonrpc.Event("o", "T", {"a": 1})


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"id":1}', '{"jsonrpc":"1.0","method":"x"}', '{"jsonrpc":"2.0","method":"x","params":[1]}'],
)
def test_decode_rejects_malformed_messages(text: str) -> None:
    with pytest.raises(ValueError):
        jsonrpc.decode_message(text)


def test_decode_event_rejects_missing_object() -> None:
    with pytest.raises(ValueError):
        jsonrpc.decode_event(jsonrpc.Request("onEvent", {"value": {"type": "T"}}))


@pytest.mark.parametrize(
    ("code", "cls"),
    [(40101, ObjectNotFound), (40208, AlreadyNegotiated), (40007, InvalidSession), (40008, KurentoError)],
)
def test_error_mapping_by_code(code: int, cls: type[KurentoError]) -> None:
    error = jsonrpc.error_from_response({"code": code, "message": "boom", "data": {"type": "SOME_TYPE"}})
    assert type(error) is cls
    assert (error.code, error.message, error.type) == (code, "boom", "SOME_TYPE")


def test_error_without_data_has_no_type() -> None:
    error = jsonrpc.error_from_response({"code": -32000, "message": "'object' parameter is required"})
    assert error.type is None and error.data is None
    assert str(error) == "'object' parameter is required (code -32000)"


def test_exceptions_survive_pickling() -> None:
    unavailable = pickle.loads(pickle.dumps(KurentoUnavailable("Request has timed out")))
    assert isinstance(unavailable, KurentoError) and unavailable.code is None
    assert unavailable.message == "Request has timed out"
    missing = pickle.loads(pickle.dumps(ObjectNotFound(40101, "Object 'x' not found", {"type": "T"})))
    assert (missing.code, missing.type) == (40101, "T")


def test_complex_types_and_names() -> None:
    assert jsonrpc.ice_candidate("candidate:1", "0", 0) == {
        "candidate": "candidate:1",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "__module__": "kurento",
        "__type__": "IceCandidate",
    }
    assert jsonrpc.to_camel("use_data_channels") == "useDataChannels"
    assert jsonrpc.to_camel("sdpMLineIndex") == "sdpMLineIndex"
    assert jsonrpc.with_session({"a": 1}, None) == {"a": 1}
    assert jsonrpc.with_session(None, "s") == {"sessionId": "s"}
