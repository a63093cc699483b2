"""KurentoClient: request/response correlation, sessionId tracking, events and reconnection.

Threads per client: the socket reader (from the transport), one event dispatcher, one keep-alive
pinger, and a reconnector while the socket is down. Callers block on ``concurrent.futures.Future``,
so many threads (or gevent greenlets after monkey patching) can share one client.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from kurento import jsonrpc
from kurento.exceptions import InvalidSession, KurentoError, KurentoUnavailable, RequestNotSent
from kurento.objects import (
    SERVER_MANAGER_ID,
    MediaObject,
    MediaPipeline,
    ServerManager,
    class_for_description,
)
from kurento.transaction import NewRef, Subscription, Transaction, outcome
from kurento.transport import WebSocketTransport

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]
FIRST_PING_PARAMS = {"interval": 240000}
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0


# Events for objects without a listener, kept while a transaction may be about to route them.
HELD_EVENTS_MAX = 1000


@dataclass
class _Pending:
    method: str
    transport: WebSocketTransport
    future: Future[dict[str, Any]] = field(default_factory=Future)
    # Runs on the reader thread with the result, before the caller wakes: it sees the response at
    # its place among the events, which the caller cannot.
    on_result: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class ClientStats:
    """What one client sent: a round trip is one wait for KMS, however many requests it carried."""

    round_trips: int = 0
    requests: int = 0
    round_trips_by_kind: Mapping[str, int] = field(default_factory=dict)
    requests_by_method: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _Listener:
    object_id: str
    event_type: str
    callback: EventCallback
    subscription_id: str | None = None


# Called after every request with (method, operation, seconds, "ok" | "error" | "skipped"): metrics
# hook; a transaction reports each of its operations ("skipped": after a failed one, never run).
request_observers: list[Callable[[str, str, float, str], None]] = []
# Called for every round trip with its kind (the method of a single request, "batch" for
# request_many, "transaction") and the methods of the requests it carried: metrics hook.
round_trip_observers: list[Callable[[str, Sequence[str]], None]] = []


class KurentoClient:
    """A thread-safe client for one KMS WebSocket URL.

    Connects lazily on the first request; every (re)connection sends ``ping`` then ``connect``, so
    the sessionId is known before any other request. ``session_id`` takes over an existing KMS
    session: that ``connect`` names it, and raises InvalidSession if KMS does not know it.
    ``on_session_lost()`` runs when a reconnect finds the session gone, so every server-side object
    must be assumed released; ``on_reconnected(same_session)`` runs after every reconnect. Both run
    on the event dispatcher thread and may make requests.
    """

    def __init__(
        self,
        url: str,
        request_timeout: float = 20.0,
        on_session_lost: Callable[[], None] | None = None,
        on_reconnected: Callable[[bool], None] | None = None,
        session_id: str | None = None,
        ping_interval: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self._on_session_lost = on_session_lost
        self._on_reconnected = on_reconnected
        self._session_id = session_id
        # KMS replays its cached response for a repeated (sessionId, id) within 20 s, so ids must
        # never repeat in a session: the counter is never reset, and it starts at the current time
        # in microseconds so that a client taking over a session (a fresh counter) starts above
        # every id the previous owner could have used. Stays below 2**53, safe for JSON numbers.
        self._ids = itertools.count(time.time_ns() // 1000)
        self._lock = threading.RLock()
        self._connect_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._listeners: dict[tuple[str, str], list[_Listener]] = {}
        self._transport: WebSocketTransport | None = None
        self._ready = threading.Event()
        self._ever_connected = False
        self._reconnecting = False
        self._closed = threading.Event()
        # Ends the reconnector's back-off early: set by close(), and by a request that has to wait.
        self._retry_now = threading.Event()
        self._pinged = False
        self._session_lost = False
        self._events: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._pinger: threading.Thread | None = None
        self._round_trips: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        # Transactions in flight that route events of objects they create, and the events that
        # found no listener meanwhile (dispatcher thread only).
        self._adoptions = 0
        self._held: deque[jsonrpc.Event] = deque(maxlen=HELD_EVENTS_MAX)

    # -- public API ------------------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def stats(self) -> ClientStats:
        """A snapshot of this client's round trips and requests since it was made."""
        with self._lock:
            return ClientStats(
                sum(self._round_trips.values()),
                sum(self._requests.values()),
                dict(self._round_trips),
                dict(self._requests),
            )

    @property
    def server_manager(self) -> ServerManager:
        return ServerManager(self, SERVER_MANAGER_ID)

    def connect(self) -> None:
        """Open the connection now instead of on the first request."""
        self._ensure_connected(time.monotonic() + self.request_timeout)

    def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one JSON-RPC request and return its ``result`` dict; raises KurentoError subclasses.

        Waits for a reconnect in progress (up to the timeout) rather than failing at once.
        """
        if not request_observers:
            return self._request(method, params, timeout)
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._request(method, params, timeout)
            outcome = "ok"
            return result
        finally:
            operation = (params or {}).get("operation") or (params or {}).get("type") or ""
            for observe in request_observers:
                observe(method, operation, time.perf_counter() - started, outcome)

    def _request(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float | None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        requests: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        while True:
            try:
                transport = self._ensure_connected(deadline)
            except KurentoUnavailable as exc:
                raise RequestNotSent(exc.message) from exc
            try:
                return self._call(transport, method, params, deadline, on_result=on_result, requests=requests)
            except _SendFailed:
                # The socket died before the frame left: nothing ran on the server, so wait for the next one.
                if time.monotonic() >= deadline:
                    raise RequestNotSent("Request has timed out") from None

    def wait_events_dispatched(self, timeout: float = 10.0) -> bool:
        """Returns once the callbacks of every event received so far have run (False on timeout).

        Events are dispatched in arrival order on one thread, so after a request returns, this
        also covers every event the server sent before answering it.
        """
        done = threading.Event()
        self._events.put(done.set)
        return done.wait(timeout)

    def create_pipeline(self, timeout: float | None = None) -> MediaPipeline:
        result = self.request("create", {"type": "MediaPipeline", "constructorParams": {}}, timeout)
        return MediaPipeline(self, result["value"])

    def get_object(self, object_id: str) -> MediaObject:
        """Describe ``object_id`` and return a proxy of its most specific known class."""
        description = self.request("describe", {"object": object_id})
        return class_for_description(description)(self, object_id)

    def proxy(self, object_id: str, cls: type[MediaObject] = MediaObject) -> MediaObject:
        """A proxy for an id known to exist, without a round trip."""
        return cls(self, object_id)

    def transaction(self) -> Transaction:
        """Collect operations to send in one ``transaction`` round trip (kurento.transaction)."""
        return Transaction(self)

    def subscribe(self, object_id: str, event_type: str, callback: EventCallback) -> str:
        """Subscribe on the server and route its events to ``callback``; returns the subscription id."""
        # Register first: KMS may send the first event before the subscribe response.
        listener = self._add_listener(object_id, event_type, callback)
        try:
            result = self.request("subscribe", {"object": object_id, "type": event_type})
        except BaseException:
            self._remove_listener(listener)
            raise
        listener.subscription_id = result["value"]
        return listener.subscription_id

    def subscribe_many(self, object_id: str, callbacks: dict[str, EventCallback]) -> dict[str, str]:
        """Subscribes to several event types of one object in a single round trip.

        Returns {event type: subscription id}; raises the first error after undoing the routes.
        """
        listeners = {event: self._add_listener(object_id, event, cb) for event, cb in callbacks.items()}
        calls = [("subscribe", {"object": object_id, "type": event}) for event in callbacks]
        answers: list[dict[str, Any]] = []
        for result in self.request_many(calls):
            if isinstance(result, KurentoError):
                for listener in listeners.values():
                    self._remove_listener(listener)
                raise result
            answers.append(result)
        subscription_ids: dict[str, str] = {}
        for (event, listener), answer in zip(listeners.items(), answers, strict=True):
            listener.subscription_id = subscription_ids[event] = answer["value"]
        return subscription_ids

    def request_many(
        self, calls: Sequence[tuple[str, dict[str, Any] | None]], timeout: float | None = None
    ) -> list[dict[str, Any] | KurentoError]:
        """Sends every request before waiting for any answer: one round trip for the lot.

        Each entry of the result is the request's ``result`` dict or its KurentoError.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        transport = self._ensure_connected(deadline)
        sent = []
        try:
            for method, params in calls:
                request_id = self._next_id()
                pending = _Pending(method, transport)
                with self._lock:
                    self._pending[request_id] = pending
                sent.append((request_id, pending))
                transport.send(
                    jsonrpc.encode_request(request_id, method, jsonrpc.with_session(params, self._session_id))
                )
        except KurentoUnavailable:
            with self._lock:
                for request_id, _pending in sent:
                    self._pending.pop(request_id, None)
            raise
        if sent:
            self._count("batch", [method for method, _params in calls])
        results: list[dict[str, Any] | KurentoError] = []
        for request_id, pending in sent:
            try:
                results.append(self._wait(request_id, pending, deadline))
            except KurentoError as exc:
                results.append(exc)
        for (method, params), result in zip(calls, results, strict=True):
            operation = (params or {}).get("operation") or (params or {}).get("type") or ""
            for observe in request_observers:
                observe(
                    method,
                    operation,
                    time.perf_counter() - started,
                    "error" if isinstance(result, KurentoError) else "ok",
                )
        return results

    def unsubscribe(self, object_id: str, subscription_id: str) -> None:
        with self._lock:
            for listener in self._all_listeners(object_id):
                if listener.subscription_id == subscription_id:
                    self._remove_listener(listener)
        self.request("unsubscribe", {"object": object_id, "subscription": subscription_id})

    def add_listener(self, object_id: str, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Route events to ``callback`` without subscribing on the server; returns a remover.

        For a session taken over with ``session_id=``: the previous owner's server-side
        subscriptions keep delivering to whichever connection holds the session.
        """
        listener = self._add_listener(object_id, event_type, callback)
        return lambda: self._remove_listener(listener)

    def forget_object(self, object_id: str) -> None:
        """Drop the local event routes of a released object and of its children (Kurento names a
        child "<parent id>/<own id>"): KMS sends them no more events, and a long-running process
        would otherwise keep every route it ever added."""
        children = f"{object_id}/"
        with self._lock:
            for key in [k for k in self._listeners if k[0] == object_id or k[0].startswith(children)]:
                del self._listeners[key]

    def close(self) -> None:
        """Close the socket and stop all threads; pending and later requests fail."""
        self._closed.set()
        self._retry_now.set()
        with self._lock:
            transport, self._transport = self._transport, None
            self._ready.clear()
        if transport is not None:
            transport.close()
        self._fail_pending(None, KurentoUnavailable("Client closed"))
        self._events.put(None)

    def __enter__(self) -> KurentoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<KurentoClient {self.url} session={self._session_id}>"

    # -- connection management ---------------------------------------------------------------

    def _ensure_connected(self, deadline: float) -> WebSocketTransport:
        self._check_open()
        if not self._ready.is_set() and not self._ever_connected:
            with self._connect_lock:
                if not self._ever_connected:
                    self._first_connect(deadline)
        if not self._ready.is_set():
            # Someone needs the server now: a server that came back (a restarted KMS) is used at
            # once, not at the end of a back-off that grew while it was away.
            self._retry_now.set()
        # Wait in slices so that close() also ends the wait, not only a reconnect or the deadline.
        while not self._ready.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            self._check_open()
            if time.monotonic() >= deadline:
                raise KurentoUnavailable("Request has timed out")
        with self._lock:
            transport = self._transport
        if transport is None:  # dropped between the wait and now; the request loop retries
            return self._ensure_connected(deadline)
        return transport

    def _first_connect(self, deadline: float) -> None:
        transport = self._open_transport()
        try:
            self._handshake(transport, deadline)
        except BaseException:
            transport.close()
            raise
        self._start_threads()
        self._ever_connected = True
        self._install(transport)

    def _open_transport(self) -> WebSocketTransport:
        return WebSocketTransport.open(self.url, self._handle_message, self._handle_close, self.connect_timeout)

    def _handshake(self, transport: WebSocketTransport, deadline: float) -> None:
        """Ping, then bind this connection to a session (the known one, or a fresh one).

        Getting the sessionId up front means concurrent first requests cannot each create a
        session of their own. Raises InvalidSession if the known session is gone.
        """
        ping_params = None if self._pinged else FIRST_PING_PARAMS
        self._call(transport, "ping", ping_params, deadline, with_session=False)
        self._pinged = True
        if self._session_id is not None:
            self._call(transport, "connect", {"sessionId": self._session_id}, deadline, with_session=False)
            return
        try:
            self._call(transport, "connect", None, deadline, with_session=False)
        except KurentoUnavailable:
            raise
        except KurentoError as exc:
            # Not fatal: the first ordinary request then gets the sessionId, as with kurento-client-js.
            logger.warning("parameterless connect refused (%s); learning the sessionId lazily", exc)

    def _install(self, transport: WebSocketTransport) -> None:
        with self._lock:
            if self._closed.is_set():
                transport.close()
                return
            self._transport = transport
            self._ready.set()
        if transport.closed:  # died during the handshake, after its close callback ran
            self._handle_close(transport)

    def _handle_close(self, transport: WebSocketTransport) -> None:
        """Reader-thread callback: fail requests in flight on that socket and start reconnecting."""
        with self._lock:
            if self._transport is transport:
                self._transport = None
                self._ready.clear()
            start = self._ever_connected and not self._reconnecting and not self._closed.is_set()
            if start:
                self._reconnecting = True
        self._fail_pending(transport, KurentoUnavailable("Connection lost"))
        if start:
            threading.Thread(target=self._reconnect_loop, name="kurento-reconnect", daemon=True).start()

    def _reconnect_loop(self) -> None:
        delay = BACKOFF_FIRST
        while not self._closed.is_set():
            try:
                self._reconnect_once()
            except KurentoError as exc:
                logger.info("reconnect to %s failed (%s); retrying in %.1fs", self.url, exc, delay)
                self._retry_now.wait(delay)
                self._retry_now.clear()
                if self._closed.is_set():
                    break
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            with self._lock:
                same_session, self._session_lost = not self._session_lost, False
            self._announce_reconnect(same_session)
            return
        with self._lock:
            self._reconnecting = False

    def _reconnect_once(self) -> None:
        transport = self._open_transport()
        deadline = time.monotonic() + self.request_timeout
        try:
            try:
                self._handshake(transport, deadline)
            except InvalidSession:
                self._forget_session()
                self._handshake(transport, deadline)
        except BaseException:
            transport.close()
            raise
        with self._lock:
            self._reconnecting = False
            self._install(transport)

    def _forget_session(self) -> None:
        # Server-side subscriptions died with the session, so local routes would never fire again.
        with self._lock:
            logger.warning("KMS session %s is gone", self._session_id)
            self._session_id = None
            self._listeners.clear()
            # Remembered until a reconnect succeeds, in case the attempt that found out fails.
            self._session_lost = True

    def _announce_reconnect(self, same_session: bool) -> None:
        if not same_session and self._on_session_lost is not None:
            self._events.put(self._on_session_lost)
        if self._on_reconnected is not None:
            callback = self._on_reconnected
            self._events.put(lambda: callback(same_session))

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise KurentoUnavailable("Client closed")

    # -- requests ------------------------------------------------------------------------

    def _call(
        self,
        transport: WebSocketTransport,
        method: str,
        params: dict[str, Any] | None,
        deadline: float,
        with_session: bool = True,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        requests: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One request, one round trip; ``requests``: the methods it carries when not just ``method``."""
        request_id = self._next_id()
        if with_session:
            params = jsonrpc.with_session(params, self._session_id)
        pending = _Pending(method, transport, on_result=on_result)
        with self._lock:
            self._pending[request_id] = pending
        try:
            transport.send(jsonrpc.encode_request(request_id, method, params))
        except KurentoUnavailable:
            with self._lock:
                self._pending.pop(request_id, None)
            raise _SendFailed() from None
        self._count(method, [method] if requests is None else requests)
        return self._wait(request_id, pending, deadline)

    def _count(self, kind: str, methods: Sequence[str]) -> None:
        with self._lock:
            self._round_trips[kind] += 1
            self._requests.update(methods)
        for observe in round_trip_observers:
            observe(kind, methods)

    def _commit_transaction(
        self, operations: list[dict[str, Any]], subscriptions: list[Subscription], timeout: float | None
    ) -> list[dict[str, Any]]:
        """Send a Transaction's operations; returns the per-operation responses.

        Subscriptions to existing objects are routed before sending (as in subscribe); those to
        objects the transaction creates, at the response's place in the event stream (_Adoption).
        """
        early = [
            (sub, self._add_listener(sub.target, sub.event_type, sub.callback))
            for sub in subscriptions
            if isinstance(sub.target, str)
        ]
        late = [sub for sub in subscriptions if isinstance(sub.target, NewRef)]
        adoption = _Adoption(self, late, len(operations)) if late else None
        started = time.perf_counter()
        try:
            result = self._request(
                "transaction",
                {"operations": operations},
                timeout,
                on_result=adoption.on_result if adoption else None,
                requests=[op["method"] for op in operations],
            )
            responses = result.get("value")
            if not isinstance(responses, list):
                raise KurentoError(None, f"malformed transaction response: {result!r}")
        except BaseException:
            for _sub, listener in early:
                self._remove_listener(listener)
            if adoption is not None:
                adoption.abandon()
            raise
        values, failure = outcome(responses, len(operations))
        for sub, listener in early:
            if failure is None:
                listener.subscription_id = str(values[sub.op_index])
            else:
                self._remove_listener(listener)
        if request_observers:
            seconds = time.perf_counter() - started
            for index, op in enumerate(operations):
                params = op["params"]
                operation = params.get("operation") or params.get("type") or ""
                state = "ok" if index < len(values) else "error" if index == len(values) else "skipped"
                for observe in request_observers:
                    observe(op["method"], operation, seconds, state)
        return responses

    def _wait(self, request_id: int, pending: _Pending, deadline: float) -> dict[str, Any]:
        try:
            return pending.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise KurentoUnavailable("Request has timed out") from None
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _fail_pending(self, transport: WebSocketTransport | None, error: KurentoError) -> None:
        """Fail requests sent on ``transport`` (all of them when None)."""
        with self._lock:
            doomed = [p for p in self._pending.values() if transport is None or p.transport is transport]
        for pending in doomed:
            if not pending.future.done():
                pending.future.set_exception(error)

    # -- incoming messages (reader thread) ------------------------------------------------

    def _handle_message(self, text: str) -> None:
        try:
            message = jsonrpc.decode_message(text)
        except ValueError as exc:
            logger.warning("ignoring malformed message from KMS: %s", exc)
            return
        if isinstance(message, jsonrpc.Response):
            self._handle_response(message)
        elif message.method == jsonrpc.EVENT_METHOD:
            self._handle_event(message)
        else:
            logger.debug("ignoring %s from KMS", message.method)

    def _handle_response(self, response: jsonrpc.Response) -> None:
        with self._lock:
            pending = self._pending.get(response.id) if isinstance(response.id, int) else None
        if pending is None or pending.future.done():
            logger.debug("response to unknown or timed-out request %r", response.id)
            return
        if response.error is not None:
            pending.future.set_exception(jsonrpc.error_from_response(response.error))
            return
        result = response.result if isinstance(response.result, dict) else {"value": response.result}
        self._learn_session(pending.method, result)
        if pending.on_result is not None:
            try:
                pending.on_result(result)
            except Exception:
                logger.exception("error in the result hook of %s", pending.method)
        pending.future.set_result(result)

    def _learn_session(self, method: str, result: dict[str, Any]) -> None:
        # Pong may echo a stale sessionId, so it never changes ours (kurento-client-js does the same).
        session_id = result.get("sessionId")
        if method == "ping" or not isinstance(session_id, str) or session_id == self._session_id:
            return
        with self._lock:
            logger.info("KMS sessionId is now %s", session_id)
            self._session_id = session_id

    def _handle_event(self, request: jsonrpc.Request) -> None:
        try:
            event = jsonrpc.decode_event(request)
        except ValueError as exc:
            logger.warning("ignoring malformed event: %s", exc)
            return
        self._events.put(lambda: self._dispatch(event))

    # -- events (dispatcher thread) -------------------------------------------------------

    def _add_listener(self, object_id: str, event_type: str, callback: EventCallback) -> _Listener:
        listener = _Listener(object_id, event_type, callback)
        with self._lock:
            self._listeners.setdefault((object_id, event_type), []).append(listener)
        return listener

    def _remove_listener(self, listener: _Listener) -> None:
        with self._lock:
            listeners = self._listeners.get((listener.object_id, listener.event_type), [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop((listener.object_id, listener.event_type), None)

    def _all_listeners(self, object_id: str) -> list[_Listener]:
        with self._lock:
            return [item for (obj, _), items in self._listeners.items() if obj == object_id for item in items]

    def _dispatch(self, event: jsonrpc.Event) -> None:
        with self._lock:
            listeners = list(self._listeners.get((event.object, event.type), ()))
        if not listeners:
            if self._adoptions:
                self._held.append(event)  # perhaps for an object a transaction in flight created
            logger.debug("no listener for %s on %s", event.type, event.object)
        for listener in listeners:
            listener.callback(event.data)

    def _adopt(self, routes: list[tuple[str, str, EventCallback, str]]) -> None:
        """Dispatcher thread: route a committed transaction's subscriptions, replaying held events."""
        adopted = set()
        for object_id, event_type, callback, subscription_id in routes:
            listener = self._add_listener(object_id, event_type, callback)
            listener.subscription_id = subscription_id
            adopted.add((object_id, event_type))
        with self._lock:
            self._adoptions -= 1
            held, kept = list(self._held), self._adoptions > 0
            self._held.clear()
        for event in held:
            if (event.object, event.type) in adopted:
                self._dispatch(event)
            elif kept:
                self._held.append(event)

    def _start_threads(self) -> None:
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="kurento-events", daemon=True)
        self._pinger = threading.Thread(target=self._ping_loop, name="kurento-ping", daemon=True)
        self._dispatcher.start()
        self._pinger.start()

    def _dispatch_loop(self) -> None:
        while (task := self._events.get()) is not None:
            try:
                task()
            except Exception:
                logger.exception("Kurento event callback failed")

    def _ping_loop(self) -> None:
        while not self._closed.wait(self.ping_interval):
            if not self._ready.is_set():
                continue  # the reconnector pings on its own
            try:
                self._ping()
            except KurentoError as exc:
                logger.info("keep-alive ping failed: %s", exc)

    def _ping(self) -> None:
        # Like kurento-client-js: only the first ping carries params; KMS ignores the interval anyway.
        deadline = time.monotonic() + self.request_timeout
        self._call(self._ensure_connected(deadline), "ping", None, deadline, with_session=False)


class _Adoption:
    """Routes the events of objects a transaction creates from their first event on.

    Their ids are unknown until the response, and KMS may send their events before it. The reader
    thread queues ``_adopt`` at the response's place among the events: events before it that found
    no listener were held (from ``start`` on) and are replayed, in order; events after it find the
    listeners. Exactly one of adopt and abandon takes effect.
    """

    def __init__(self, client: KurentoClient, subscriptions: list[Subscription], n_operations: int) -> None:
        self._client = client
        self._subscriptions = subscriptions
        self._n_operations = n_operations
        self._settled = threading.Lock()
        self._done = False
        with client._lock:
            client._adoptions += 1

    def on_result(self, result: dict[str, Any]) -> None:
        responses = result.get("value")
        routes: list[tuple[str, str, EventCallback, str]] = []
        if isinstance(responses, list):
            values, failure = outcome(responses, self._n_operations)
            if failure is None:
                for sub in self._subscriptions:
                    assert isinstance(sub.target, NewRef)
                    object_id = values[sub.target.index]
                    if isinstance(object_id, str):
                        routes.append((object_id, sub.event_type, sub.callback, str(values[sub.op_index])))
        if self._settle():
            self._client._events.put(lambda: self._client._adopt(routes))

    def abandon(self) -> None:
        if self._settle():
            self._client._events.put(lambda: self._client._adopt([]))

    def _settle(self) -> bool:
        with self._settled:
            first, self._done = not self._done, True
            return first


class _SendFailed(RequestNotSent):
    """The frame never left because the socket was already gone; safe to resend."""

    def __init__(self) -> None:
        super().__init__("Connection lost before sending")
