"""kms_emulator.protocol: framing, error shapes and newref substitution."""

from __future__ import annotations

import pytest

from kms_emulator import protocol
from kms_emulator.protocol import RpcError


def test_dumps_sorts_keys_compactly() -> None:
    message = protocol.result_response(5, {"value": None, "sessionId": "s"})
    assert protocol.dumps(message) == '{"id":5,"jsonrpc":"2.0","result":{"sessionId":"s","value":null}}'


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (protocol.parse_error(), {"code": -32700, "data": {"type": "PARSE_ERROR"}, "message": "Parse error."}),
        (protocol.invalid_request(), {"code": -32600, "message": "Invalid JSON-RPC request."}),
        (protocol.method_not_found(), {"code": -32601, "message": "Method not found."}),
        (protocol.missing_param("object"), {"code": -32000, "message": "'object' parameter is required"}),
        (
            protocol.operation_not_found("foo", 2),
            {
                "code": 40008,
                "data": {"type": "MALFORMED_TRANSACTION"},
                "message": "Method 'foo' with 2 parameters not found",
            },
        ),
        (
            protocol.factory_not_found("X"),
            {"code": 40108, "data": {"type": "MEDIA_OBJECT_NOT_AVAILABLE"}, "message": "Factory 'X' not found"},
        ),
        (
            protocol.object_not_found("o"),
            {"code": 40101, "data": {"type": "MEDIA_OBJECT_NOT_FOUND"}, "message": "Object 'o' not found"},
        ),
        (
            protocol.event_not_supported("OnIceCandidate"),
            {
                "code": 40106,
                "data": {"type": "MEDIA_OBJECT_EVENT_NOT_SUPPORTED"},
                "message": "Event 'OnIceCandidate' not supported",
            },
        ),
        (
            protocol.invalid_session(),
            {"code": 40007, "data": {"type": "INVALID_SESSION"}, "message": "Invalid session"},
        ),
    ],
)
def test_error_objects(error: RpcError, expected: dict) -> None:
    assert error.error_object() == expected


def test_newref_outside_transaction_is_40109() -> None:
    assert protocol.object_not_found("newref:0").code == 40109
    assert protocol.object_not_found("newref:0").message == (
        "Object 'newref:0' not found. Possibly using a transactional object without committing the transaction."
    )
    assert protocol.object_not_found("newref:").code == 40101


def test_error_response_shape() -> None:
    assert protocol.dumps(protocol.error_response(None, protocol.invalid_request())) == (
        '{"error":{"code":-32600,"message":"Invalid JSON-RPC request."},"id":null,"jsonrpc":"2.0"}'
    )


@pytest.mark.parametrize("frame", ["{bad", b"\xff\xfe"])
def test_decode_parse_errors(frame: str | bytes) -> None:
    with pytest.raises(RpcError) as raised:
        protocol.decode_request(frame)
    assert raised.value.code == -32700


@pytest.mark.parametrize(
    "frame",
    [
        '[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
        '{"id":1,"method":"ping"}',
        '{"jsonrpc":"2.0","id":1}',
        '{"jsonrpc":"2.0","id":[1],"method":"ping"}',
        "5",
    ],
)
def test_decode_invalid_requests(frame: str) -> None:
    with pytest.raises(RpcError) as raised:
        protocol.decode_request(frame)
    assert raised.value.code == -32600


def test_decode_accepts_string_ids() -> None:
    assert protocol.decode_request('{"jsonrpc":"2.0","id":"a","method":"ping"}')["id"] == "a"


def test_event_notification_has_no_id_nor_subscription() -> None:
    message = protocol.event_notification("o", "IceGatheringDone", {"type": "IceGatheringDone"})
    assert message == {
        "jsonrpc": "2.0",
        "method": "onEvent",
        "params": {"value": {"data": {"type": "IceGatheringDone"}, "object": "o", "type": "IceGatheringDone"}},
    }


def test_timestamp_millis_is_a_digit_string() -> None:
    stamp = protocol.timestamp_millis()
    assert isinstance(stamp, str) and stamp.isdigit() and len(stamp) == 13


def test_complex_values() -> None:
    value = protocol.complex_value("IceCandidate", candidate="c", sdpMid="0", sdpMLineIndex=0)
    assert value["__module__"] == "kurento" and value["__type__"] == "IceCandidate"
    assert protocol.strip_complex(value) == {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}


def test_replace_newrefs_recursively() -> None:
    params = {"object": "newref:1", "list": ["newref:0", "x", "newref:"], "nested": {"p": "newref:1x"}, "n": 3}
    responses = [{"id": 0, "result": {"value": "P"}}, {"id": 1, "result": {"value": "E"}}]
    assert protocol.replace_newrefs(params, responses) == {
        "object": "E",
        "list": ["P", "x", "newref:"],  # "newref:" alone is no reference (KMS needs more than the prefix)
        "nested": {"p": "E"},  # the index is read like C's stoi: leading digits
        "n": 3,
    }
    # A release has no value: its newref is null.
    assert protocol.replace_newrefs("newref:0", [{"id": 0, "result": {"sessionId": "s"}}]) is None


@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [
        ("newref:x", 40008, "Invalid index of newref 'x'"),
        ("newref:2", 40008, "Result not found on request 2"),
        ("newref:-1", -32603, None),
    ],
)
def test_bad_newrefs_fail_the_whole_transaction(ref: str, code: int, message: str | None) -> None:
    with pytest.raises(RpcError) as caught:
        protocol.replace_newrefs({"object": ref}, [{"id": 0, "result": {"value": "P"}}])
    assert caught.value.code == code and (message is None or caught.value.message == message)
