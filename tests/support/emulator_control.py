"""Client of the emulator's test-only control socket (kms_emulator.control, `--test-control`)."""

from __future__ import annotations

import json
from typing import Any

import websocket

from kms_emulator.control import CONTROL_PATH


def control_url(kms_url: str) -> str:
    """ws://host:port/kurento -> ws://host:port/_emulator/control"""
    return kms_url.rsplit("/", 1)[0] + "/" + CONTROL_PATH


def control(kms_url: str, command: str, **params: Any) -> dict[str, Any]:
    ws = websocket.create_connection(control_url(kms_url), timeout=10)
    try:
        ws.send(json.dumps({"command": command, **params}))
        answer = json.loads(ws.recv())
    finally:
        ws.close()
    assert answer["ok"], answer
    return answer


def drop_connections(kms_url: str, session_id: str | None = None) -> int:
    params = {} if session_id is None else {"sessionId": session_id}
    return int(control(kms_url, "dropConnections", **params)["dropped"])


def sessions(kms_url: str) -> dict[str, dict[str, Any]]:
    return control(kms_url, "sessions")["sessions"]


def remote_candidates(kms_url: str, object_id: str) -> list[dict[str, Any]]:
    return control(kms_url, "endpoint", object=object_id)["remoteCandidates"]


def raise_event(kms_url: str, object_id: str, event_type: str, data: dict[str, Any]) -> int:
    """Raises a Kurento event on an object; returns how many KMS sessions it was delivered to."""
    return int(control(kms_url, "raiseEvent", object=object_id, type=event_type, data=data)["delivered"])


def count_operations(requests: list[dict[str, Any]], operation: str) -> int:
    """How many of `requests` (the emulator's `requests`) are `operation` (an invoke's operation,
    else a method), the operations of transactions included."""
    count = 0
    for request in requests:
        params = request.get("params") or {}
        carried = params.get("operations") if request.get("method") == "transaction" else None
        for op in carried if isinstance(carried, list) else [request]:
            op_params = op.get("params") or {}
            count += (op_params.get("operation") if op.get("method") == "invoke" else op.get("method")) == operation
    return count
