"""A tiny fake KMS on a real WebSocket, for the client's unit tests.

It speaks just enough of kurento-protocol.md to exercise the client end to end: lazy sessions and
connection binding, ``connect {sessionId}`` with 40007, objects with describe/invoke/release,
subscriptions routed by session, and a few test-only operations (``hang``, ``fire``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from kurento import jsonrpc


class FakeKms:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sessions: set[str] = set()
        self.objects: dict[str, str] = {"manager_ServerManager": "ServerManager"}
        self.negotiated: set[str] = set()
        self.subscriptions: dict[tuple[str, str, str], list[str]] = {}  # (session, object, type) → ids
        self.bound: dict[str, ServerConnection] = {}  # session → the connection that holds it
        self.connection_count = 0
        self.cache: dict[tuple[str, Any], str] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control from the test thread --------------------------------------------------------

    def start(self, port: int = 0) -> None:
        self._thread.start()
        self._run(self._start(port))

    def stop(self) -> None:
        if self._loop.is_running():
            self._run(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running() and not self._loop.is_closed():
            # An unclosed loop leaks its self-pipe sockets: a ResourceWarning, so a test error.
            self._loop.close()

    def drop_connections(self) -> None:
        """Close every client socket, as a network blip or a proxy restart would."""
        self._run(self._drop())

    def forget_sessions(self) -> None:
        """Pretend KMS restarted: every session (and its subscriptions) is gone."""
        self._loop.call_soon_threadsafe(self._forget)

    def methods(self) -> list[str]:
        return [r.get("method", "") for r in list(self.requests)]

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/kurento"

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    # -- server side (event loop thread) -----------------------------------------------------

    async def _start(self, port: int) -> None:
        self._server = await serve(self._handle, "127.0.0.1", port, ping_interval=None)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _drop(self) -> None:
        for connection in list(self._connections):
            await connection.close()

    def _forget(self) -> None:
        self.sessions.clear()
        self.cache.clear()
        self.subscriptions.clear()
        self.bound.clear()

    async def _handle(self, connection: ServerConnection) -> None:
        self._connections.add(connection)
        self.connection_count += 1
        try:
            async for text in connection:
                await self._answer(connection, json.loads(text))
        except Exception:
            pass
        finally:
            self._connections.discard(connection)

    async def _answer(self, connection: ServerConnection, request: dict[str, Any]) -> None:
        self.requests.append(request)
        method, params, request_id = request["method"], dict(request.get("params") or {}), request["id"]
        if method == "ping":
            result: dict[str, Any] = {"value": "pong"}
            session_id = params.get("sessionId") or self._session_of(connection)
            if session_id:
                result["sessionId"] = session_id
            await connection.send(jsonrpc.encode_result(request_id, result))
            return
        if method == "connect":
            await self._connect(connection, request_id, params.get("sessionId"))
            return
        session_id = params.get("sessionId") or self._session_of(connection) or str(uuid.uuid4())
        self.sessions.add(session_id)
        self.bound[session_id] = connection
        if (session_id, request_id) in self.cache:  # KMS's request cache replays, it does not rerun
            await connection.send(self.cache[(session_id, request_id)])
            return
        sent = await self._reply(connection, session_id, method, params, request_id)
        if sent is not None:
            self.cache[(session_id, request_id)] = sent

    async def _reply(
        self, connection: ServerConnection, session_id: str, method: str, params: dict[str, Any], request_id: int
    ) -> str | None:
        try:
            value = await self._dispatch(session_id, method, params)
        except _Error as error:
            text = jsonrpc.encode_error(request_id, error.code, error.message, {"type": error.type})
            await connection.send(text)
            return text
        if value is _NO_REPLY:
            return None
        result = {"sessionId": session_id}
        if method == "describe":
            result.update(value)  # describe is the one result with no "value" wrapper
        elif value is not _NO_VALUE:
            result["value"] = value
        text = jsonrpc.encode_result(request_id, result)
        await connection.send(text)
        return text

    async def _connect(self, connection: ServerConnection, request_id: int, session_id: str | None) -> None:
        if session_id is not None and session_id not in self.sessions:
            await connection.send(
                jsonrpc.encode_error(request_id, 40007, "Invalid session", {"type": "INVALID_SESSION"})
            )
            return
        session_id = session_id or str(uuid.uuid4())
        self.sessions.add(session_id)
        self.bound[session_id] = connection
        await connection.send(jsonrpc.encode_result(request_id, {"serverId": "fake", "sessionId": session_id}))

    def _session_of(self, connection: ServerConnection) -> str | None:
        return next((s for s, c in self.bound.items() if c is connection), None)

    async def _dispatch(self, session_id: str, method: str, params: dict[str, Any]) -> Any:
        if method == "create":
            return self._create(params)
        if method in ("describe", "invoke", "subscribe") and params["object"] not in self.objects:
            raise _Error(40101, f"Object '{params['object']}' not found", "MEDIA_OBJECT_NOT_FOUND")
        if method == "describe":
            kind = self.objects[params["object"]]
            return {"hierarchy": ["kurento.MediaObject"], "qualifiedType": f"kurento.{kind}", "type": kind}
        if method == "subscribe":
            subscription = str(uuid.uuid4())
            self.subscriptions.setdefault((session_id, params["object"], params["type"]), []).append(subscription)
            return subscription
        if method == "invoke":
            return await self._invoke(
                session_id, params["object"], params["operation"], params.get("operationParams", {})
            )
        if method == "release":
            self.objects.pop(params["object"], None)
        if method in ("release", "unsubscribe"):
            return _NO_VALUE
        raise _Error(-32601, "Method not found.", "METHOD_NOT_FOUND")

    def _create(self, params: dict[str, Any]) -> str:
        kind = params["type"]
        object_id = f"{uuid.uuid4()}_kurento.{kind}"
        if kind != "MediaPipeline":
            object_id = f"{params['constructorParams']['mediaPipeline']}/{object_id}"
        self.objects[object_id] = kind
        return object_id

    async def _invoke(self, session_id: str, object_id: str, operation: str, op_params: dict[str, Any]) -> Any:
        if operation in SERVER_MANAGER_ANSWERS:
            return SERVER_MANAGER_ANSWERS[operation]
        if operation == "getPipelines":
            return [o for o, kind in self.objects.items() if kind == "MediaPipeline"]
        if operation == "hang":
            return _NO_REPLY
        if operation == "echo":
            return op_params
        if operation == "fire":
            await self._emit(session_id, object_id, op_params["type"], op_params.get("data", {}))
            return None
        if operation == "processOffer":
            if object_id in self.negotiated:
                raise _Error(40208, "Endpoint already negotiated", "SDP_END_POINT_ALREADY_NEGOTIATED")
            self.negotiated.add(object_id)
            return "v=0 answer"
        if operation == "gatherCandidates":
            # Sent before the response on purpose: real KMS may do the same.
            candidate = jsonrpc.ice_candidate("candidate:1 1 UDP 1 10.0.0.1 40000 typ host", "0", 0)
            await self._emit(session_id, object_id, "IceCandidateFound", {"candidate": candidate})
            await self._emit(session_id, object_id, "IceGatheringDone", {})
            return None
        return None

    async def _emit(self, session_id: str, object_id: str, event_type: str, data: dict[str, Any]) -> None:
        connection = self.bound.get(session_id)
        if connection is None or not self.subscriptions.get((session_id, object_id, event_type)):
            return  # KMS drops events nobody can receive, and sends one per (object, type)
        payload = {**data, "source": object_id, "tags": [], "timestampMillis": "1700000000000", "type": event_type}
        await connection.send(jsonrpc.encode_event(object_id, event_type, payload))


class _Error(Exception):
    def __init__(self, code: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.code, self.message, self.type = code, message, error_type


SERVER_MANAGER_ANSWERS: dict[str, Any] = {
    "getInfo": {"__module__": "kurento", "__type__": "ServerInfo", "version": "7.3.0", "type": "KMS"},
    "getUsedMemory": 123456,
    "getSessions": ["", "s1"],  # real KMS pads the list with empty strings
    "getCpuCount": 4,
    "getUsedCpu": 12.5,
}
_NO_VALUE = object()
_NO_REPLY = object()


@pytest.fixture
def fake_kms_factory() -> Iterator[Callable[[int], FakeKms]]:
    """Start more fake servers, e.g. a replacement on the port of a stopped one."""
    servers: list[FakeKms] = []

    def start(port: int = 0) -> FakeKms:
        server = FakeKms()
        server.start(port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fake_kms(fake_kms_factory: Callable[[int], FakeKms]) -> FakeKms:
    return fake_kms_factory(0)
