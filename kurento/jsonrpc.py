"""Pure JSON-RPC 2.0 encoding and decoding for the Kurento protocol.

No I/O and no state: the client and the KMS emulator share these functions, so both sides agree
on the wire format. Kurento's camelCase names (``sessionId``, ``constructorParams``) stay in this
module; callers use snake_case.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kurento.exceptions import (
    AlreadyNegotiated,
    InvalidSession,
    KurentoError,
    ObjectNotFound,
)

JSONRPC_VERSION = "2.0"
EVENT_METHOD = "onEvent"

# KurentoException.hpp codes that callers handle specifically (kurento-protocol.md §3.1).
OBJECT_NOT_FOUND = 40101
ALREADY_NEGOTIATED = 40208
INVALID_SESSION = 40007

ERROR_CLASSES: dict[int, type[KurentoError]] = {
    OBJECT_NOT_FOUND: ObjectNotFound,
    ALREADY_NEGOTIATED: AlreadyNegotiated,
    INVALID_SESSION: InvalidSession,
}


@dataclass(frozen=True)
class Request:
    """A call; ``id`` is None for a notification."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    id: int | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"'method' must be a non-empty string (got {self.method!r})")
        if not isinstance(self.params, dict):
            raise ValueError(f"'params' must be an object (got {type(self.params).__name__})")


@dataclass(frozen=True)
class Response:
    """A reply to request ``id``: exactly one of ``result`` and ``error`` is meaningful."""

    id: int | str | None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.error is not None and not isinstance(self.error, dict):
            raise ValueError(f"'error' must be an object (got {type(self.error).__name__})")


@dataclass(frozen=True)
class Event:
    """The ``value`` of an ``onEvent`` notification."""

    object: str
    type: str
    data: dict[str, Any]


Message = Request | Response


def encode_request(request_id: int | str | None, method: str, params: dict[str, Any] | None = None) -> str:
    """Encode a request; ``params`` is left out when None (KMS treats absent and empty alike)."""
    message: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        message["params"] = params
    if request_id is not None:
        message["id"] = request_id
    return _dumps(message)


def encode_result(request_id: int | str | None, result: dict[str, Any]) -> str:
    return _dumps({"id": request_id, "jsonrpc": JSONRPC_VERSION, "result": result})


def encode_error(request_id: int | str | None, code: int, message: str, data: dict[str, Any] | None = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _dumps({"error": error, "id": request_id, "jsonrpc": JSONRPC_VERSION})


def encode_event(object_id: str, event_type: str, data: dict[str, Any]) -> str:
    """Encode an ``onEvent`` notification (no id, no subscription id: KMS 7 routes by object and type)."""
    value = {"data": data, "object": object_id, "type": event_type}
    return encode_request(None, EVENT_METHOD, {"value": value})


def decode_message(text: str | bytes) -> Message:
    """Parse one frame into a Request (including notifications) or a Response.

    Raises ValueError for anything that is not a single JSON-RPC 2.0 object.
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ValueError(f"a JSON-RPC message must be an object (got {type(message).__name__})")
    if message.get("jsonrpc") != JSONRPC_VERSION:
        raise ValueError(f"'jsonrpc' must be '2.0' (got {message.get('jsonrpc')!r})")
    if "method" in message:
        return Request(message["method"], message.get("params") or {}, message.get("id"))
    if "result" in message or "error" in message:
        return Response(message.get("id"), message.get("result"), message.get("error"))
    raise ValueError("message is neither a request nor a response")


def decode_event(request: Request) -> Event:
    """Extract the event from an ``onEvent`` notification; raises ValueError if malformed."""
    value = request.params.get("value")
    if request.method != EVENT_METHOD or not isinstance(value, dict):
        raise ValueError(f"not an onEvent notification: {request.method!r}")
    object_id, event_type = value.get("object"), value.get("type")
    if not isinstance(object_id, str) or not isinstance(event_type, str):
        raise ValueError("onEvent value needs string 'object' and 'type'")
    data = value.get("data")
    return Event(object_id, event_type, data if isinstance(data, dict) else {})


def error_from_response(error: dict[str, Any]) -> KurentoError:
    """Build the exception for a JSON-RPC error object, choosing the subclass by code."""
    code = error.get("code")
    message = str(error.get("message", "Unknown error"))
    data = error.get("data") if isinstance(error.get("data"), dict) else None
    cls = ERROR_CLASSES.get(code, KurentoError) if isinstance(code, int) else KurentoError
    return cls(code if isinstance(code, int) else None, message, data)


def with_session(params: dict[str, Any] | None, session_id: str | None) -> dict[str, Any]:
    """Return a copy of ``params`` carrying ``sessionId`` when one is known (left out while unknown).

    An explicit ``sessionId`` already in ``params`` wins.
    """
    merged = dict(params or {})
    if session_id is not None:
        merged.setdefault("sessionId", session_id)
    return merged


def complex_value(type_name: str, **fields: Any) -> dict[str, Any]:
    """A REGISTER complex type as KMS expects it, tagged with ``__module__``/``__type__``."""
    return {**fields, "__module__": "kurento", "__type__": type_name}


def ice_candidate(candidate: str, sdp_mid: str, sdp_mline_index: int) -> dict[str, Any]:
    return complex_value("IceCandidate", candidate=candidate, sdpMid=sdp_mid, sdpMLineIndex=sdp_mline_index)


def to_camel(name: str) -> str:
    """``use_data_channels`` → ``useDataChannels``; names already in camelCase pass through."""
    return re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), name)


def camel_keys(params: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(key): value for key, value in params.items()}


def _dumps(message: dict[str, Any]) -> str:
    # Sorted keys match KMS's jsoncpp output byte for byte, which the emulator wants.
    return json.dumps(message, sort_keys=True, separators=(",", ":"))
