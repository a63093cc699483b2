"""KMS sessions: lazy creation, connection binding, event routing, request cache and garbage collection.

Semantics follow kurento-protocol.md 1.1-1.2: the last connection to get a response carrying a sessionId is
bound to it; events go to the connection bound to each subscribing session and are dropped when none is; a
repeated (sessionId, request id) within 20 s gets the cached response.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

REQUEST_CACHE_SECONDS = 20.0


class Connection(Protocol):
    session_id: str | None

    def send(self, message: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class Session:
    id: str
    connection: Connection | None = None
    in_use: bool = True
    # How many `connect {sessionId}` requests resumed this session (reported by the test control).
    resumed: int = 0
    objects: set[str] = field(default_factory=set)
    # subscription id -> (object id, event type)
    subscriptions: dict[str, tuple[str, str]] = field(default_factory=dict)


class SessionManager:
    """Sessions of one emulator process, plus the subscription index used to route events."""

    def __init__(self, cache_seconds: float = REQUEST_CACHE_SECONDS) -> None:
        self.sessions: dict[str, Session] = {}
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, Any], tuple[float, dict[str, Any]]] = {}
        # (object id, event type) -> {session id: number of subscriptions}
        self._routes: dict[tuple[str, str], dict[str, int]] = {}
        # object id -> {(session id, subscription id)}, so releasing an object does not scan every session
        self._by_object: dict[str, set[tuple[str, str]]] = {}

    # -- lifecycle --------------------------------------------------------------------------------------------
    def create(self, session_id: str | None = None) -> Session:
        session = Session(session_id or str(uuid.uuid4()))
        self.sessions[session.id] = session
        return session

    def get_or_create(self, session_id: str) -> Session:
        # A request naming an unknown sessionId (e.g. after a KMS restart) recreates it under that id.
        return self.sessions.get(session_id) or self.create(session_id)

    def bind(self, connection: Connection, session_id: str) -> None:
        """Bind connection to session_id; the last connection to use a session wins."""
        session = self.get_or_create(session_id)
        previous = connection.session_id
        if previous and previous != session_id:
            old = self.sessions.get(previous)
            if old is not None and old.connection is connection:
                old.connection = None
        if session.connection is not None and session.connection is not connection:
            session.connection.session_id = None
        session.connection = connection
        session.in_use = True
        connection.session_id = session_id

    def unbind(self, connection: Connection) -> None:
        session = self.sessions.get(connection.session_id or "")
        if session is not None and session.connection is connection:
            session.connection = None
        connection.session_id = None

    def ref(self, session_id: str, object_ids: list[str]) -> None:
        self.get_or_create(session_id).objects.update(object_ids)

    # -- subscriptions and routing ----------------------------------------------------------------------------
    def subscribe(self, session_id: str, object_id: str, event_type: str) -> str:
        subscription = str(uuid.uuid4())
        self.get_or_create(session_id).subscriptions[subscription] = (object_id, event_type)
        per_session = self._routes.setdefault((object_id, event_type), {})
        per_session[session_id] = per_session.get(session_id, 0) + 1
        self._by_object.setdefault(object_id, set()).add((session_id, subscription))
        return subscription

    def unsubscribe(self, session_id: str, subscription: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or subscription not in session.subscriptions:
            return
        key = session.subscriptions.pop(subscription)
        self._by_object.get(key[0], set()).discard((session_id, subscription))
        per_session = self._routes.get(key, {})
        per_session[session_id] = per_session.get(session_id, 1) - 1
        if per_session.get(session_id, 0) <= 0:
            per_session.pop(session_id, None)
        if not per_session:
            self._routes.pop(key, None)

    def forget_object(self, object_id: str) -> None:
        """Drop the subscriptions to a released object and the session refs to it."""
        for session_id, subscription in self._by_object.pop(object_id, set()):
            session = self.sessions.get(session_id)
            if session is not None:
                key = session.subscriptions.pop(subscription, None)
                if key is not None:
                    self._routes.pop(key, None)
        for session in self.sessions.values():
            session.objects.discard(object_id)

    def has_route(self, object_id: str, event_type: str) -> bool:
        return (object_id, event_type) in self._routes

    def route(self, object_id: str, event_type: str, message: dict[str, Any]) -> int:
        """Send message once per subscribing session with a bound connection; return deliveries."""
        delivered = 0
        for session_id in list(self._routes.get((object_id, event_type), {})):
            session = self.sessions.get(session_id)
            if session is not None and session.connection is not None:
                session.connection.send(message)
                delivered += 1
        return delivered

    # -- request cache ----------------------------------------------------------------------------------------
    def cached(self, session_id: str, request_id: Any) -> dict[str, Any] | None:
        entry = self._cache.get((session_id, _hashable(request_id)))
        if entry is None or time.monotonic() - entry[0] > self.cache_seconds:
            return None
        return entry[1]

    def store(self, session_id: str, request_id: Any, response: dict[str, Any]) -> None:
        now = time.monotonic()
        self._cache[(session_id, _hashable(request_id))] = (now, response)
        if len(self._cache) % 1024 == 0:
            self.prune_cache(now)

    def prune_cache(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in [k for k, (t, _) in self._cache.items() if now - t > self.cache_seconds]:
            del self._cache[key]

    # -- garbage collection -----------------------------------------------------------------------------------
    def collect(self) -> list[Session]:
        """One GC tick: bound sessions stay marked; unmarked ones are removed and returned."""
        collected = []
        for session in list(self.sessions.values()):
            if session.connection is not None:
                session.in_use = True
            elif session.in_use:
                session.in_use = False
            else:
                collected.append(self.sessions.pop(session.id))
        self._drop_routes({s.id for s in collected})
        return collected

    def expire(self, session_id: str) -> Session | None:
        """Collect one session now, as the GC does once it stayed unbound for two periods."""
        session = self.sessions.pop(session_id, None)
        if session is not None:
            self._drop_routes({session_id})
        return session

    def _drop_routes(self, gone: set[str]) -> None:
        if not gone:
            return
        for key, per_session in list(self._routes.items()):
            for session_id in gone & per_session.keys():
                del per_session[session_id]
            if not per_session:
                del self._routes[key]


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
