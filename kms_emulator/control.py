"""Test-only control socket of the emulator (`--test-control`); not part of the KMS protocol.

Served on ws://HOST:PORT/_emulator/control only when enabled, so that without the flag every
path but /kurento is refused as KMS refuses it, and /kurento itself is unchanged either way.
One JSON object per frame, `{"command": name, ...}`; the answer is `{"ok": true, ...}` or
`{"ok": false, "error": text}`. Commands:

- `dropConnections {sessionId?}`: aborts the TCP connection of every client socket (or of the one
  bound to `sessionId`) without a close frame, as a network failure does. Sessions, objects and
  subscriptions stay, so a client can resume its session with `connect {sessionId}`. With
  `graceful: true` the sockets are closed with a close frame instead (a proxy restarting), and the
  answer comes once the client has acknowledged it, so the client knows by then.
- `expireSession {sessionId}`: drops the session's socket and collects the session as KMS's garbage
  collector does once a session stays unbound for two periods (its objects that no other session
  references are released). A client resuming it with `connect {sessionId}` then gets 40007.
- `sessions`: `{sessionId: {bound, resumed, objects}}`; `resumed` counts the `connect {sessionId}`
  requests that named that session while it was known.
- `endpoint {object}`: what an SdpEndpoint was given: `remoteCandidates` (every non-empty
  addIceCandidate in arrival order, those sent before the SDP included), `negotiated`,
  `gatheringStarted`. Real KMS has no getter for remote candidates; tests use this to check
  that candidates the service buffered did reach the endpoint.
- `raiseEvent {object, type, data}`: raises a Kurento event on an object as if its media had
  changed, e.g. `IceComponentStateChanged {state: FAILED}` for a connection that drops, which a
  signaling-mode endpoint (no network, so nothing to fail) never does by itself. It goes the
  way every event goes: to the connection bound to each KMS session subscribed to it.
  Answers `{delivered}`, the number of sessions it reached.
- `requests`: every request received on /kurento, as the client sent it (before the session is
  injected), and `connections`, the number of client sockets accepted; tests check the wire
  format of a client with these.
- `withholdResponses {operation}`: from now on, an `invoke` of that operation (or a request of that
  method, e.g. `transaction`), and a transaction carrying one, runs but is never answered, as by a
  KMS that stalls; other requests on the same socket are answered as usual.
- `failOperation {operation, code, message?, count?, type?}`: the next `count` (default 1) requests
  of that operation, also operations of a transaction, are answered with the JSON-RPC error `code`
  without running, as by a KMS whose element fails. `operation` names an `invoke` operation
  (`processOffer`) or a method (`create`); `type` restricts `create` to one element type
  (`WebRtcEndpoint`). `count: 0` fails every such request until `clearFailures` (a KMS whose
  element is broken for good). Lets tests drive the service's handling of errors it does not map.
- `clearFailures`: forgets every `failOperation`; answers `{cleared}`, how many were pending.
- `delayResponses {ms, operation?}`: from now on every request (or every request of `operation`,
  named as for `failOperation`, and a transaction carrying one) is answered `ms` milliseconds
  late, as by an overloaded KMS. The request runs on arrival and only its answer waits (on the
  event loop, per request), so later requests on the same socket, and other sockets, are not held
  up behind it; events it raises are not delayed. `ms: 0` clears the delay (of that operation, or
  of every request when none is named); a request with both delays waits the longer.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kms_emulator.protocol import RpcError

if TYPE_CHECKING:
    from kms_emulator.server import Emulator

CONTROL_PATH = "_emulator/control"


@dataclass
class ControlRecord:
    """What the control socket reports and changes about /kurento; kept only with `--test-control`."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    withheld: set[str] = field(default_factory=set)
    failing: list[InjectedFailure] = field(default_factory=list)
    # Seconds each answer waits: by operation name, None for every request.
    delays: dict[str | None, float] = field(default_factory=dict)

    def received(self, request: dict[str, Any]) -> bool:
        """Records a decoded request before it runs; False when its response must be withheld."""
        self.requests.append(copy.deepcopy(request))
        # A KMS stalling on one operation never answers the transaction that carries it.
        return not carried_ops(request) & self.withheld

    def response_delay(self, request: dict[str, Any]) -> float:
        """Seconds the answer to this request waits (`delayResponses`); 0 for none."""
        if not self.delays:
            return 0.0
        named = [self.delays[name] for name in carried_ops(request) if name in self.delays]
        return max([self.delays.get(None, 0.0), *named])

    def injected_failure(self, request: dict[str, Any]) -> RpcError | None:
        """The error a `failOperation` set up for this request (one of its `count` used), else None."""
        params = request.get("params")
        params = params if isinstance(params, dict) else {}
        operation = op_name(request)
        for failure in self.failing:
            if failure.operation == operation and failure.type in (None, params.get("type")):
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self.failing.remove(failure)
                return RpcError(failure.code, failure.message)
        return None


def carried_ops(request: dict[str, Any]) -> set[str | None]:
    """The request's own name and, for a transaction, those of the operations it carries."""
    carried = {op_name(request)}
    params = request.get("params")
    transaction = request.get("method") == "transaction" and isinstance(params, dict)
    operations = params.get("operations") if transaction and isinstance(params, dict) else None
    if isinstance(operations, list):
        carried |= {op_name(op) for op in operations if isinstance(op, dict)}
    return carried


def op_name(request: dict[str, Any]) -> str | None:
    """What `withholdResponses` and `failOperation` name: an `invoke`'s operation, else the method."""
    params = request.get("params")
    method = request.get("method")
    return params.get("operation") if method == "invoke" and isinstance(params, dict) else method


@dataclass
class InjectedFailure:
    operation: str
    code: int
    message: str
    remaining: int | None  # None: until clearFailures
    type: str | None = None


async def serve_control(emulator: Emulator, websocket: ServerConnection) -> None:
    try:
        async for frame in websocket:
            try:
                request = json.loads(frame)
                if not isinstance(request, dict):
                    raise ValueError("a control request is a JSON object")
                answer = {"ok": True, **await run_command(emulator, request)}
            except (ValueError, KeyError, TypeError) as error:
                answer = {"ok": False, "error": str(error)}
            await websocket.send(json.dumps(answer, sort_keys=True))
    except ConnectionClosed:
        pass


async def run_command(emulator: Emulator, request: dict[str, Any]) -> dict[str, Any]:
    command = request.get("command")
    if command == "dropConnections":
        if request.get("graceful") is True:
            return {"dropped": await close_connections(emulator, request.get("sessionId"))}
        return {"dropped": drop_connections(emulator, request.get("sessionId"))}
    if command == "expireSession":
        session_id = str(request["sessionId"])
        dropped = drop_connections(emulator, session_id)
        # Forgotten before the first await, so a reconnect cannot resume it in between.
        session = emulator.sessions.expire(session_id)
        if session is None:
            raise KeyError(f"no session {session_id!r}")
        await emulator.release_unreferenced(session.objects)
        return {"dropped": dropped}
    if command == "sessions":
        return {
            "sessions": {
                session.id: {
                    "bound": session.connection is not None,
                    "resumed": session.resumed,
                    "objects": len(session.objects),
                }
                for session in emulator.sessions.sessions.values()
            }
        }
    if command == "endpoint":
        obj = emulator.registry.get(str(request["object"]))
        if obj is None:
            raise KeyError(f"no object {request['object']!r}")
        return {
            "remoteCandidates": [
                {"candidate": c, "sdpMid": mid, "sdpMLineIndex": index} for c, mid, index in obj.remote_candidates
            ],
            "negotiated": obj.remote_sdp is not None and obj.local_sdp is not None,
            "gatheringStarted": obj.gathering_started,
        }
    if command == "raiseEvent":
        obj = emulator.registry.get(str(request["object"]))
        if obj is None:
            raise KeyError(f"no object {request['object']!r}")
        event_type, data = str(request["type"]), request.get("data", {})
        if not obj.supports_event(event_type) or not isinstance(data, dict):
            raise ValueError(f"{obj.type} raises no {event_type!r} event with data {data!r}")
        return {"delivered": emulator.emit(obj, event_type, data)}
    if command == "requests":
        record = _record(emulator)
        return {"requests": record.requests, "connections": record.connections}
    if command == "withholdResponses":
        _record(emulator).withheld.add(str(request["operation"]))
        return {}
    if command == "failOperation":
        count = int(request.get("count", 1))
        if count < 0:
            raise ValueError("count must be at least 1, or 0 for every request until clearFailures")
        kind = request.get("type")
        _record(emulator).failing.append(
            InjectedFailure(
                operation=str(request["operation"]),
                code=int(request["code"]),
                message=str(request.get("message", "injected failure")),
                remaining=count or None,
                type=None if kind is None else str(kind),
            )
        )
        return {}
    if command == "clearFailures":
        record = _record(emulator)
        cleared, record.failing = len(record.failing), []
        return {"cleared": cleared}
    if command == "delayResponses":
        seconds = float(request["ms"]) / 1000.0
        if seconds < 0:
            raise ValueError("ms must not be negative")
        operation = request.get("operation")
        name = None if operation is None else str(operation)
        delays = _record(emulator).delays
        if seconds:
            delays[name] = seconds
        else:
            delays.pop(name, None)
        return {}
    raise ValueError(f"unknown command {command!r}")


def _record(emulator: Emulator) -> ControlRecord:
    if emulator.control is None:
        raise ValueError("the emulator runs without --test-control")
    return emulator.control


async def close_connections(emulator: Emulator, session_id: str | None = None) -> int:
    """Closes client sockets (all, or the one bound to session_id) with the close handshake."""
    doomed = [conn for conn in emulator.connections if session_id is None or conn.session_id == session_id]
    for conn in doomed:
        await conn.websocket.close()
    return len(doomed)


def drop_connections(emulator: Emulator, session_id: str | None = None) -> int:
    """Aborts client sockets (all, or the one bound to session_id); returns how many."""
    doomed = [conn for conn in emulator.connections if session_id is None or conn.session_id == session_id]
    for conn in doomed:
        # abort(): no close frame, like a cable pulled; the handler then unbinds the session.
        conn.websocket.transport.abort()
    return len(doomed)
