"""Pure JSON-RPC helpers for the emulator: framing, error shapes and complex types.

Nothing here touches sockets or state, so the same functions can be unit-tested and reused. Wire details follow
kurento-protocol.md sections 1-3 (KMS serialises with jsoncpp, hence sorted keys).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

JSONRPC = "2.0"
NEW_REF = "newref:"

# JSON-RPC codes (JsonRpcException.hpp) and KurentoException codes used by the emulator.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
MARSHALL_ERROR = 40001
UNEXPECTED_ERROR = 40003
INVALID_SESSION = 40007
MALFORMED_TRANSACTION = 40008
MEDIA_OBJECT_NOT_FOUND = 40101
MEDIA_OBJECT_EVENT_NOT_SUPPORTED = 40106
MEDIA_OBJECT_NOT_AVAILABLE = 40108
MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT = 40109
TAG_KEY_NOT_FOUND = 40110
SDP_PARSE_ERROR = 40201
SDP_END_POINT_NO_LOCAL_SDP_ERROR = 40202
SDP_END_POINT_NO_REMOTE_SDP_ERROR = 40203
SDP_END_POINT_GENERATE_OFFER_ERROR = 40204
SDP_END_POINT_PROCESS_OFFER_ERROR = 40205
SDP_END_POINT_PROCESS_ANSWER_ERROR = 40206
SDP_END_POINT_ALREADY_NEGOTIATED = 40208
SDP_END_POINT_NOT_OFFER_GENERATED = 40209
SDP_END_POINT_ANSWER_ALREADY_PROCCESED = 40210
ICE_GATHER_CANDIDATES_ERROR = 40400
ICE_ADD_CANDIDATE_ERROR = 40401
SERVER_MANAGER_ERROR_KMD_NOT_FOUND = 40500

# data.type for each code; codes missing here go out without "data" (-32600, -32601, -32603, -32000).
ERROR_TYPES: dict[int, str] = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_PARAMS: "INVALID_PARAMS",
    MARSHALL_ERROR: "MARSHALL_ERROR",
    UNEXPECTED_ERROR: "UNEXPECTED_ERROR",
    INVALID_SESSION: "INVALID_SESSION",
    MALFORMED_TRANSACTION: "MALFORMED_TRANSACTION",
    MEDIA_OBJECT_NOT_FOUND: "MEDIA_OBJECT_NOT_FOUND",
    MEDIA_OBJECT_EVENT_NOT_SUPPORTED: "MEDIA_OBJECT_EVENT_NOT_SUPPORTED",
    MEDIA_OBJECT_NOT_AVAILABLE: "MEDIA_OBJECT_NOT_AVAILABLE",
    MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT: "MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT",
    TAG_KEY_NOT_FOUND: "TAG_KEY_NOT_FOUND",
    SDP_PARSE_ERROR: "SDP_PARSE_ERROR",
    SDP_END_POINT_NO_LOCAL_SDP_ERROR: "SDP_END_POINT_NO_LOCAL_SDP_ERROR",
    SDP_END_POINT_NO_REMOTE_SDP_ERROR: "SDP_END_POINT_NO_REMOTE_SDP_ERROR",
    SDP_END_POINT_GENERATE_OFFER_ERROR: "SDP_END_POINT_GENERATE_OFFER_ERROR",
    SDP_END_POINT_PROCESS_OFFER_ERROR: "SDP_END_POINT_PROCESS_OFFER_ERROR",
    SDP_END_POINT_PROCESS_ANSWER_ERROR: "SDP_END_POINT_PROCESS_ANSWER_ERROR",
    SDP_END_POINT_ALREADY_NEGOTIATED: "SDP_END_POINT_ALREADY_NEGOTIATED",
    SDP_END_POINT_NOT_OFFER_GENERATED: "SDP_END_POINT_NOT_OFFER_GENERATED",
    SDP_END_POINT_ANSWER_ALREADY_PROCCESED: "SDP_END_POINT_ANSWER_ALREADY_PROCCESED",
    ICE_GATHER_CANDIDATES_ERROR: "ICE_GATHER_CANDIDATES_ERROR",
    ICE_ADD_CANDIDATE_ERROR: "ICE_ADD_CANDIDATE_ERROR",
    SERVER_MANAGER_ERROR_KMD_NOT_FOUND: "SERVER_MANAGER_ERROR_KMD_NOT_FOUND",
}


class RpcError(Exception):
    """A JSON-RPC error to send back; `error_object()` gives the wire shape."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.code in ERROR_TYPES:
            error["data"] = {"type": ERROR_TYPES[self.code]}
        return error


def parse_error() -> RpcError:
    return RpcError(PARSE_ERROR, "Parse error.")


def invalid_request() -> RpcError:
    return RpcError(INVALID_REQUEST, "Invalid JSON-RPC request.")


def method_not_found() -> RpcError:
    return RpcError(METHOD_NOT_FOUND, "Method not found.")


def params_required() -> RpcError:
    return RpcError(INVALID_PARAMS, "'params' is required")


def missing_param(name: str) -> RpcError:
    return RpcError(SERVER_ERROR, f"'{name}' parameter is required")


def wrong_param_type(name: str, kind: str) -> RpcError:
    return RpcError(SERVER_ERROR, f"'{name}' parameter should be a {kind}")


def marshall_missing(name: str) -> RpcError:
    return RpcError(MARSHALL_ERROR, f"'{name}' parameter is required")


def marshall_wrong_type(name: str, kind: str) -> RpcError:
    return RpcError(MARSHALL_ERROR, f"'{name}' parameter should be a {kind}")


def object_not_found(object_id: str) -> RpcError:
    if len(object_id) > len(NEW_REF) and object_id.startswith(NEW_REF):
        return RpcError(
            MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT,
            f"Object '{object_id}' not found. Possibly using a transactional object"
            " without committing the transaction.",
        )
    return RpcError(MEDIA_OBJECT_NOT_FOUND, f"Object '{object_id}' not found")


def operation_not_found(operation: str, n_params: int) -> RpcError:
    return RpcError(MALFORMED_TRANSACTION, f"Method '{operation}' with {n_params} parameters not found")


def factory_not_found(type_name: str) -> RpcError:
    return RpcError(MEDIA_OBJECT_NOT_AVAILABLE, f"Factory '{type_name}' not found")


def event_not_supported(event: str) -> RpcError:
    return RpcError(MEDIA_OBJECT_EVENT_NOT_SUPPORTED, f"Event '{event}' not supported")


def invalid_session() -> RpcError:
    return RpcError(INVALID_SESSION, "Invalid session")


def dumps(message: dict[str, Any]) -> str:
    """Serialise like jsoncpp: keys sorted, so identical output for identical content."""
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def result_response(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "jsonrpc": JSONRPC, "result": result}


def error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"error": error.error_object(), "id": request_id, "jsonrpc": JSONRPC}


def event_notification(object_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """onEvent has no id and no subscription id: clients route by (object, type)."""
    value = {"data": data, "object": object_id, "type": event_type}
    return {"jsonrpc": JSONRPC, "method": "onEvent", "params": {"value": value}}


def complex_value(type_name: str, **fields: Any) -> dict[str, Any]:
    """A REGISTER complex type as KMS writes it, tagged with __module__/__type__."""
    return {"__module__": "kurento", "__type__": type_name, **fields}


def strip_complex(value: dict[str, Any]) -> dict[str, Any]:
    """Inputs may come with or without the __module__/__type__ tags; drop them."""
    return {k: v for k, v in value.items() if k not in ("__module__", "__type__")}


def timestamp_millis() -> str:
    # RaiseBase.timestampMillis is int64 but KMS emits it as a JSON string.
    return str(int(time.time() * 1000))


def decode_request(frame: str | bytes) -> dict[str, Any]:
    """Parse one frame into a request dict, raising RpcError for -32700/-32600 cases."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        raise parse_error() from None
    if not isinstance(message, dict):
        raise invalid_request()
    if message.get("jsonrpc") != JSONRPC or not isinstance(message.get("method"), str):
        raise invalid_request()
    if isinstance(message.get("id"), (list, dict)):
        raise invalid_request()
    return message


def replace_newrefs(value: Any, responses: list[dict[str, Any]]) -> Any:
    """Substitute 'newref:N' strings, anywhere in a transaction op's params, with op N's result value.

    As KMS's injectRefs: N is read like C's stoi (leading digits); none is 40008 "Invalid index";
    an op without a result (not run yet) is 40008 "Result not found"; a negative or out-of-range N
    trips jsoncpp/stoi inside KMS and comes out as -32603.
    """
    if isinstance(value, dict):
        return {k: replace_newrefs(v, responses) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_newrefs(v, responses) for v in value]
    if not (isinstance(value, str) and len(value) > len(NEW_REF) and value.startswith(NEW_REF)):
        return value
    ref = value[len(NEW_REF) :]
    digits = re.match(r"\s*[+-]?\d+", ref)
    if digits is None:
        raise RpcError(MALFORMED_TRANSACTION, f"Invalid index of newref '{ref}'")
    index = int(digits.group())
    if index < 0:
        raise RpcError(
            INTERNAL_ERROR,
            "Unexpected error while processing method: in Json::Value::operator[](int index): index cannot be negative",
        )
    if index > 2**31 - 1:
        raise RpcError(INTERNAL_ERROR, "Unexpected error while processing method: stoi")
    result = responses[index].get("result") if index < len(responses) else None
    if not isinstance(result, dict):
        raise RpcError(MALFORMED_TRANSACTION, f"Result not found on request {index}")
    return result.get("value")
