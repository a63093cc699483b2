"""kms_emulator.sessions and registry: binding, routing, request cache, GC, ids and release cascade."""

from __future__ import annotations

import re
from typing import Any

from kms_emulator.registry import Registry, normalise_type
from kms_emulator.sessions import SessionManager


class FakeConnection:
    def __init__(self) -> None:
        self.session_id: str | None = None
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_last_connection_to_bind_wins_and_gets_events() -> None:
    sessions = SessionManager()
    first, second = FakeConnection(), FakeConnection()
    sessions.bind(first, "s")
    sessions.subscribe("s", "obj", "E")
    sessions.bind(second, "s")
    assert sessions.route("obj", "E", {"m": 1}) == 1
    assert (first.sent, second.sent) == ([], [{"m": 1}])
    assert first.session_id is None and second.session_id == "s"


def test_events_dropped_when_unbound_and_one_delivery_per_session() -> None:
    sessions = SessionManager()
    conn = FakeConnection()
    sessions.bind(conn, "s")
    first = sessions.subscribe("s", "obj", "E")
    second = sessions.subscribe("s", "obj", "E")
    assert first != second
    sessions.route("obj", "E", {"n": 1})
    assert conn.sent == [{"n": 1}]
    sessions.unsubscribe("s", first)
    sessions.route("obj", "E", {"n": 2})
    assert conn.sent[-1] == {"n": 2}
    sessions.unbind(conn)
    assert sessions.route("obj", "E", {"n": 3}) == 0
    sessions.unsubscribe("s", "unknown")  # never fails


def test_request_cache_is_keyed_by_session_and_id_and_expires(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("kms_emulator.sessions.time.monotonic", lambda: clock[0])
    sessions = SessionManager()
    sessions.store("s", 1, {"r": 1})
    assert sessions.cached("s", 1) == {"r": 1}
    assert sessions.cached("t", 1) is None and sessions.cached("s", 2) is None
    clock[0] += 20.5
    assert sessions.cached("s", 1) is None
    sessions.prune_cache()
    assert sessions.cached("s", 1) is None


def test_gc_needs_two_ticks_without_connection() -> None:
    sessions = SessionManager()
    conn = FakeConnection()
    sessions.create("idle")
    sessions.bind(conn, "bound")
    assert sessions.collect() == []
    assert [s.id for s in sessions.collect()] == ["idle"]
    assert "bound" in sessions.sessions


def test_ids_follow_kms_format_and_release_cascades() -> None:
    registry = Registry()
    pipeline = registry.create("MediaPipeline", None, {})
    endpoint = registry.create("WebRtcEndpoint", pipeline, {"mediaPipeline": pipeline.id})
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert re.fullmatch(uuid + "_kurento.MediaPipeline", pipeline.id)
    assert re.fullmatch(re.escape(pipeline.id) + "/" + uuid + "_kurento.WebRtcEndpoint", endpoint.id)
    assert [o.id for o in registry.release(pipeline)] == [endpoint.id, pipeline.id]
    assert registry.get(endpoint.id) is None and registry.release(pipeline) == []
    assert registry.release(registry.server_manager) == []


def test_types_hierarchy_and_events() -> None:
    assert normalise_type("kurento.WebRtcEndpoint") == "WebRtcEndpoint"
    assert normalise_type("ServerManager") is None and normalise_type("Nope") is None
    registry = Registry()
    pipeline = registry.create("MediaPipeline", None, {})
    endpoint = registry.create("WebRtcEndpoint", pipeline, {})
    assert endpoint.describe()["hierarchy"][0] == "kurento.BaseRtpEndpoint"
    assert endpoint.supports_event("IceCandidateFound") and endpoint.supports_event("Error")
    assert not endpoint.supports_event("OnIceCandidate")
    assert not pipeline.supports_event("IceCandidateFound")
    assert registry.server_manager.supports_event("ObjectCreated")
