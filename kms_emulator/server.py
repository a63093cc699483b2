"""The emulator: websocket transport, top-level JSON-RPC methods, sessions, events and GC.

One `Emulator` per process, all on one asyncio loop. Requests of one connection are handled in order; an event
may be written before or after the response of the call that caused it, as with KMS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from kms_emulator import protocol
from kms_emulator.control import CONTROL_PATH, ControlRecord, serve_control
from kms_emulator.operations import Operations
from kms_emulator.protocol import RpcError
from kms_emulator.recorder import MEDIA_PROFILES, Recorder, RecordingSink
from kms_emulator.registry import Emit, EndpointMedia, MediaObject, Registry, normalise_type
from kms_emulator.sessions import SessionManager

log = logging.getLogger("kms_emulator")

METHODS = (
    "ping",
    "connect",
    "create",
    "describe",
    "invoke",
    "subscribe",
    "unsubscribe",
    "release",
    "transaction",
    "closeSession",
    "keepAlive",
    "ref",
    "unref",
)
# Fields of event payloads that are complex types and need __module__/__type__ on the wire.
COMPLEX_EVENT_FIELDS = {
    "IceCandidateFound": {"candidate": "IceCandidate"},
    "NewCandidatePairSelected": {"candidatePair": "IceCandidatePair"},
}
# Events whose data has no "type" member (ObjectCreated/Destroyed) or gets it from the fields (Error).
UNTYPED_EVENTS = ("ObjectCreated", "ObjectDestroyed", "Error")
REQUIRED_CTOR_PARAMS = {"PlayerEndpoint": ("uri",), "RecorderEndpoint": ("uri",), "GStreamerFilter": ("command",)}


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8888
    path: str = "kurento"
    """WebSocket path without the leading slash (mediaServer.net.websocket.path)."""
    mode: str = "signaling"
    memory_offset_kib: int = 0
    """Added to the real RSS in getUsedMemory, to simulate a loaded server."""
    gc_period: float = 240.0
    """Session garbage-collector period in seconds; an unbound session dies after one to two periods."""
    request_cache_seconds: float = 20.0
    test_control: bool = False
    """Serve the test-only control socket (kms_emulator.control) beside /kurento."""


class MediaBackend(Protocol):
    def create_endpoint(
        self, endpoint_id: str, emit: Emit, *, recvonly: bool = False, sendonly: bool = False
    ) -> EndpointMedia: ...

    def create_recording_sink(self, endpoint_id: str, uri: str, profile: str) -> RecordingSink:
        """Where a RecorderEndpoint's media goes (kms_emulator.recorder)."""
        ...

    async def close(self) -> None: ...


class WsConnection:
    """One client socket; outgoing frames go through a queue so events and responses keep their order."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        self.session_id: str | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, message: dict[str, Any]) -> None:
        self._queue.put_nowait(protocol.dumps(message))

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def write_loop(self) -> None:
        while (frame := await self._queue.get()) is not None:
            try:
                await self.websocket.send(frame)
            except ConnectionClosed:
                return


class Emulator:
    """State and JSON-RPC semantics of one emulated KMS."""

    def __init__(self, config: EmulatorConfig, backend: MediaBackend) -> None:
        self.config = config
        self.backend = backend
        self.server_id = str(uuid.uuid4())
        self.registry = Registry()
        self.sessions = SessionManager(config.request_cache_seconds)
        self.operations = Operations(self)
        # Open client sockets, so the test-only control can drop them.
        self.connections: set[WsConnection] = set()
        self.control = ControlRecord() if config.test_control else None

    # -- frames -----------------------------------------------------------------------------------------------
    async def handle_frame(self, conn: WsConnection, frame: str | bytes) -> dict[str, Any] | None:
        """Process one frame; return the response to send, or None for a notification."""
        try:
            request = protocol.decode_request(frame)
        except RpcError as error:
            return protocol.error_response(_scalar_id(frame), error)
        answered = self.control is None or self.control.received(request)
        injected = None if self.control is None else self.control.injected_failure(request)
        if injected is not None:
            return protocol.error_response(request.get("id"), injected) if "id" in request else None
        response = await self.process(conn, request, cache=True)
        result = response.get("result")
        if isinstance(result, dict) and isinstance(result.get("sessionId"), str):
            self.sessions.bind(conn, result["sessionId"])
        if "id" not in request or not answered:
            return None
        delay = 0.0 if self.control is None else self.control.response_delay(request)
        if delay > 0:
            # An overloaded KMS (test control): answered later, without holding up this socket's next frame.
            asyncio.get_running_loop().call_later(delay, conn.send, response)
            return None
        return response

    async def process(
        self, conn: WsConnection | None, request: dict[str, Any], *, cache: bool, transaction: bool = False
    ) -> dict[str, Any]:
        """Run one request (injecting the bound sessionId) and return its response, using the request cache."""
        request_id = request.get("id")
        params = request.get("params")
        if isinstance(params, dict) and "sessionId" not in params and conn is not None and conn.session_id:
            params["sessionId"] = conn.session_id
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        cacheable = cache and request_id is not None and request["method"] != "ping"
        if cacheable and isinstance(session_id, str):
            cached = self.sessions.cached(session_id, request_id)
            if cached is not None:
                return cached
        try:
            result = await self._dispatch(conn, request["method"], params, transaction)
            response = protocol.result_response(request_id, result)
        except RpcError as error:
            response = protocol.error_response(request_id, error)
        except Exception:  # noqa: BLE001 - any bug becomes -32603, like an uncaught exception in KMS
            log.exception("internal error processing %s", request.get("method"))
            response = protocol.error_response(request_id, RpcError(protocol.INTERNAL_ERROR, "Internal error"))
        stored_session = session_id if isinstance(session_id, str) else response.get("result", {}).get("sessionId")
        if cacheable and stored_session:
            self.sessions.store(stored_session, request_id, response)
        return response

    async def _dispatch(
        self, conn: WsConnection | None, method: str, params: dict[str, Any] | None, transaction: bool
    ) -> dict[str, Any]:
        if method not in METHODS:
            raise protocol.method_not_found()
        if params is not None and not isinstance(params, dict):
            raise protocol.invalid_request()
        if params is not None and "sessionId" in params and not isinstance(params["sessionId"], str):
            raise protocol.wrong_param_type("sessionId", "string")
        if method == "ping":
            return self._ping(conn, params)
        if method == "connect":
            return self._connect(params)
        if params is None:
            raise protocol.params_required()
        session_id = params.get("sessionId") or self.sessions.create().id
        self.sessions.get_or_create(session_id).in_use = True
        handler = getattr(self, f"_rpc_{method}")
        return await handler(session_id, params, conn, transaction)

    # -- ping / connect ---------------------------------------------------------------------------------------
    def _ping(self, conn: WsConnection | None, params: dict[str, Any] | None) -> dict[str, Any]:
        result: dict[str, Any] = {"value": "pong"}
        session_id = (params or {}).get("sessionId") or (conn.session_id if conn else None)
        if session_id:
            result["sessionId"] = session_id
        return result

    def _connect(self, params: dict[str, Any] | None) -> dict[str, Any]:
        session_id = (params or {}).get("sessionId")
        if session_id is None:
            session_id = self.sessions.create().id
        elif session_id not in self.sessions.sessions:
            raise protocol.invalid_session()
        else:
            self.sessions.sessions[session_id].resumed += 1
        self.sessions.sessions[session_id].in_use = True
        return {"serverId": self.server_id, "sessionId": session_id}

    # -- object lifecycle -------------------------------------------------------------------------------------
    async def _rpc_create(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        type_name = _require_str(params, "type")
        plain = normalise_type(type_name)
        if plain is None:
            raise protocol.factory_not_found(type_name)
        ctor = params.get("constructorParams")
        parent = None if plain == "MediaPipeline" else self._constructor_parent(plain, ctor)
        ctor = ctor if isinstance(ctor, dict) else {}
        for name in REQUIRED_CTOR_PARAMS.get(plain, ()):
            if name not in ctor:
                raise protocol.marshall_missing(name)
        flags = {name: _ctor_bool(ctor, name) for name in ("recvonly", "sendonly", "useDataChannels")}
        if plain == "RecorderEndpoint":
            _check_recorder_params(ctor)
        obj = self.registry.create(plain, parent, ctor)
        if obj.is_a("SdpEndpoint"):
            obj.media = self._create_media(obj, recvonly=flags["recvonly"], sendonly=flags["sendonly"])
        if plain == "RecorderEndpoint":
            object_id = obj.id
            sink = self.backend.create_recording_sink(object_id, ctor["uri"], ctor.get("mediaProfile", "WEBM"))
            obj.recorder = Recorder(lambda event, fields: self.emit_by_id(object_id, event, fields), sink)
        self._ref(session_id, obj)
        self.emit(self.registry.server_manager, "ObjectCreated", {"object": obj.id})
        return {"sessionId": session_id, "value": obj.id}

    def _constructor_parent(self, plain: str, ctor: Any) -> MediaObject:
        if ctor is None:
            raise RpcError(protocol.MARSHALL_ERROR, "'constructorParams' is required")
        if not isinstance(ctor, dict):
            raise protocol.marshall_wrong_type("constructorParams", "object")
        key = "hub" if plain == "HubPort" else "mediaPipeline"
        if key not in ctor:
            raise protocol.marshall_missing(key)
        if not isinstance(ctor[key], str):
            raise protocol.marshall_wrong_type(key, "string")
        parent = self.lookup(ctor[key])
        expected = "Hub" if key == "hub" else "MediaPipeline"
        if not parent.is_a(expected):
            raise protocol.marshall_wrong_type(key, expected)
        return parent

    def _create_media(self, obj: MediaObject, *, recvonly: bool, sendonly: bool) -> EndpointMedia:
        from kms_emulator.signaling import SignalingBackend

        backend = self.backend if obj.type == "WebRtcEndpoint" else SignalingBackend()
        object_id = obj.id
        return backend.create_endpoint(
            object_id,
            lambda event, fields: self.emit_by_id(object_id, event, fields),
            recvonly=recvonly,
            sendonly=sendonly,
        )

    def _ref(self, session_id: str, obj: MediaObject) -> None:
        chain: list[str] = []
        item: MediaObject | None = obj
        while item is not None:
            chain.append(item.id)
            item = item.parent
        self.sessions.ref(session_id, chain)

    async def release_object(self, obj: MediaObject) -> None:
        for item in self.registry.release(obj):
            self._unlink(item)
            if item.media is not None:
                with contextlib.suppress(Exception):
                    await item.media.release()
            if item.recorder is not None:
                with contextlib.suppress(Exception):
                    await item.recorder.release()
            self.emit(self.registry.server_manager, "ObjectDestroyed", {"objectId": item.id})
            self.sessions.forget_object(item.id)

    def _unlink(self, item: MediaObject) -> None:
        for sink_id, media_type in list(item.sinks):
            sink = self.registry.get(sink_id)
            if sink is not None:
                sink.sources.discard((item.id, media_type))
        for source_id, media_type in list(item.sources):
            source = self.registry.get(source_id)
            if source is not None:
                source.sinks.discard((item.id, media_type))

    async def _rpc_release(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        obj = self.registry.get(_require_str(params, "object"))
        if obj is not None:
            await self.release_object(obj)
        return {"sessionId": session_id}

    async def _rpc_describe(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        obj = self.lookup(_require_str(params, "object"))
        self._ref(session_id, obj)
        return {**obj.describe(), "sessionId": session_id}

    async def _rpc_invoke(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        obj = self.lookup(_require_str(params, "object"))
        operation = _require_str(params, "operation")
        operation_params = params.get("operationParams")
        if operation_params is not None and not isinstance(operation_params, dict):
            raise protocol.marshall_wrong_type("operationParams", "object")
        self._ref(session_id, obj)
        value = await self.operations.invoke(obj, operation, operation_params, session_id)
        return {"sessionId": session_id, "value": value}

    # -- events -----------------------------------------------------------------------------------------------
    async def _rpc_subscribe(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        obj = self.lookup(_require_str(params, "object"))
        event_type = _require_str(params, "type")
        if not obj.supports_event(event_type):
            raise protocol.event_not_supported(event_type)
        self._ref(session_id, obj)
        return {"sessionId": session_id, "value": self.sessions.subscribe(session_id, obj.id, event_type)}

    async def _rpc_unsubscribe(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        self.sessions.unsubscribe(session_id, _require_str(params, "subscription"))
        return {"sessionId": session_id}

    def emit_by_id(self, object_id: str, event_type: str, fields: dict[str, Any]) -> None:
        obj = self.registry.get(object_id)
        if obj is not None:
            self.emit(obj, event_type, fields)

    def emit(self, obj: MediaObject, event_type: str, fields: dict[str, Any]) -> int:
        """Raise an event on obj; it reaches the sessions subscribed to (obj, event_type). Returns deliveries."""
        if not self.sessions.has_route(obj.id, event_type):
            return 0
        data = dict(fields)
        for name, type_name in COMPLEX_EVENT_FIELDS.get(event_type, {}).items():
            if isinstance(data.get(name), dict) and "__type__" not in data[name]:
                data[name] = protocol.complex_value(type_name, **data[name])
        data["source"] = obj.id
        data["timestampMillis"] = protocol.timestamp_millis()
        data["tags"] = self.operations.tag_list(obj) if obj.send_tags_in_events else []
        if event_type not in UNTYPED_EVENTS:
            data["type"] = event_type
        return self.sessions.route(obj.id, event_type, protocol.event_notification(obj.id, event_type, data))

    # -- transactions and legacy methods ----------------------------------------------------------------------
    async def _rpc_transaction(
        self, session_id: str, params: dict[str, Any], conn: WsConnection | None, transaction: bool
    ) -> dict[str, Any]:
        operations = params.get("operations")
        if operations is None:
            raise protocol.missing_param("operations")
        if not isinstance(operations, list):
            raise RpcError(protocol.SERVER_ERROR, "'operations' parameter should be an array")
        # As ServerMethods::transaction: each op gets the transaction's sessionId, its id must be its
        # index (checked when its turn comes: earlier ops have run), newref:N in its params becomes
        # op N's result value, and the first failing op ends the list.
        responses: list[dict[str, Any]] = []
        for index, operation in enumerate(operations):
            if isinstance(operation, dict):
                op_params = operation.get("params")
                operation["params"] = op_params = op_params if isinstance(op_params, dict) else {}
                op_params["sessionId"] = session_id
            if not isinstance(operation, dict) or _transaction_index(operation.get("id")) != index:
                raise RpcError(protocol.MALFORMED_TRANSACTION, f"Id of request '{index}' should be '{index}'")
            request = {**operation, "params": protocol.replace_newrefs(operation["params"], responses)}
            try:
                decoded = protocol.decode_request(protocol.dumps(request))
            except RpcError as error:
                responses.append({**protocol.error_response(index, error), "id": index})
                break
            injected = None if self.control is None else self.control.injected_failure(decoded)
            if injected is not None:
                responses.append({**protocol.error_response(index, injected), "id": index})
                break
            response = await self.process(None, decoded, cache=False, transaction=True)
            responses.append({**response, "id": index})
            if "error" in response:
                break
        return {"sessionId": session_id, "value": responses}

    async def _rpc_closeSession(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        session = self.sessions.sessions.get(session_id)
        if session is not None:
            object_ids, session.objects = set(session.objects), set()
            if params.get("release") is True:
                for object_id in object_ids:
                    obj = self.registry.get(object_id)
                    if obj is not None:
                        await self.release_object(obj)
            else:
                await self.release_unreferenced(object_ids)
        return {"sessionId": session_id}

    async def _rpc_keepAlive(self, session_id: str, *_: Any) -> dict[str, Any]:
        return {"sessionId": session_id}

    async def _rpc_ref(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        self._ref(session_id, self.lookup(_require_str(params, "object")))
        return {"sessionId": session_id}

    async def _rpc_unref(self, session_id: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        object_id = _require_str(params, "object")
        session = self.sessions.sessions.get(session_id)
        if session is not None and object_id in session.objects:
            session.objects.discard(object_id)
            await self.release_unreferenced({object_id})
        return {"sessionId": session_id}

    # -- garbage collection -----------------------------------------------------------------------------------
    async def collect_garbage(self) -> int:
        """One GC tick; returns the number of sessions collected."""
        collected = self.sessions.collect()
        orphaned: set[str] = set()
        for session in collected:
            orphaned |= session.objects
        await self.release_unreferenced(orphaned)
        return len(collected)

    async def release_unreferenced(self, object_ids: set[str]) -> None:
        """Release each object that no live session references, directly or through a descendant."""
        live: set[str] = set()
        for session in self.sessions.sessions.values():
            live |= session.objects
        for object_id in sorted(object_ids, key=len):
            obj = self.registry.get(object_id)
            if obj is None or obj.type == "ServerManager":
                continue
            if not any(o.id in live for o in [obj, *obj.descendants()]):
                await self.release_object(obj)

    async def gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_period)
            self.sessions.prune_cache()
            await self.collect_garbage()

    # -- helpers ----------------------------------------------------------------------------------------------
    def lookup(self, object_id: str) -> MediaObject:
        obj = self.registry.get(object_id)
        if obj is None:
            raise protocol.object_not_found(object_id)
        return obj


def _transaction_index(value: Any) -> int | None:
    # jsoncpp's isConvertibleTo(uintValue): null is 0, booleans are 0/1, integral numbers >= 0.
    if value is None or isinstance(value, bool):
        return int(bool(value))
    if isinstance(value, (int, float)) and value >= 0 and float(value).is_integer():
        return int(value)
    return None


def _require_str(params: dict[str, Any], name: str) -> str:
    if name not in params:
        raise protocol.missing_param(name)
    if not isinstance(params[name], str):
        raise protocol.wrong_param_type(name, "string")
    return params[name]


def _ctor_bool(ctor: dict[str, Any], name: str) -> bool:
    value = ctor.get(name, False)
    if not isinstance(value, bool):
        raise protocol.marshall_wrong_type(name, "boolean")
    return value


def _check_recorder_params(ctor: dict[str, Any]) -> None:
    """RecorderEndpoint(uri: String, mediaProfile?: MediaProfileSpecType, stopOnEndOfStream?: boolean)."""
    if not isinstance(ctor["uri"], str):
        raise protocol.marshall_wrong_type("uri", "string")
    if "mediaProfile" in ctor and ctor["mediaProfile"] not in MEDIA_PROFILES:
        raise protocol.marshall_wrong_type("mediaProfile", "MediaProfileSpecType")
    if "stopOnEndOfStream" in ctor and not isinstance(ctor["stopOnEndOfStream"], bool):
        raise protocol.marshall_wrong_type("stopOnEndOfStream", "boolean")


def _scalar_id(frame: str | bytes) -> Any:
    # -32700 and batch errors carry id null; a parsable object keeps its scalar id.
    with contextlib.suppress(Exception):
        import json

        message = json.loads(frame)
        if isinstance(message, dict) and isinstance(message.get("id"), (str, int, float)):
            return message["id"]
    return None


def _path_of(request_path: str) -> str:
    return request_path.split("?", 1)[0].lstrip("/")


async def run_server(
    config: EmulatorConfig,
    backend: MediaBackend,
    ready: asyncio.Future[int] | None = None,
    stop: asyncio.Future[None] | None = None,
    emulator: Emulator | None = None,
) -> None:
    """Serve until `stop` resolves (or forever); `ready` receives the bound port.

    `emulator`: one built by the caller, who keeps it to look inside (tests run one in-process)."""
    emulator = emulator if emulator is not None else Emulator(config, backend)

    async def handler(websocket: ServerConnection) -> None:
        path = _path_of(websocket.request.path if websocket.request else "")
        if config.test_control and path == CONTROL_PATH:
            await serve_control(emulator, websocket)
            return
        if path != config.path:
            await websocket.close(CloseCode.PROTOCOL_ERROR, "Invalid path")
            return
        conn = WsConnection(websocket)
        emulator.connections.add(conn)
        if emulator.control is not None:
            emulator.control.connections += 1
        writer = asyncio.get_running_loop().create_task(conn.write_loop())
        try:
            async for frame in websocket:
                response = await emulator.handle_frame(conn, frame)
                if response is not None:
                    conn.send(response)
        except ConnectionClosed:
            pass
        finally:
            emulator.connections.discard(conn)
            emulator.sessions.unbind(conn)
            conn.close()
            await writer

    gc_task = asyncio.get_running_loop().create_task(emulator.gc_loop())
    async with serve(handler, config.host, config.port, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        if ready is not None and not ready.done():
            ready.set_result(port)
        try:
            await (stop if stop is not None else asyncio.get_running_loop().create_future())
        finally:
            gc_task.cancel()
            await backend.close()
