"""WebSocket transport: one connection, a reader thread, and sends serialised by a lock.

The client owns reconnection; a transport is single-use. Only the stdlib ``threading`` and
``socket`` modules are used (through websocket-client), so gevent's monkey patching turns the
reader thread into a greenlet and every blocking call into a cooperative one.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Protocol

import websocket

from kurento.exceptions import KurentoUnavailable

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str], None]
CloseHandler = Callable[["WebSocketTransport"], None]


class Transport(Protocol):
    """What the client needs from a connection; tests and other transports implement the same."""

    def send(self, text: str) -> None: ...

    def close(self) -> None: ...


class WebSocketTransport:
    """A connected websocket-client socket plus the thread that reads from it.

    ``on_message`` runs on the reader thread for every text frame; ``on_close`` runs exactly once,
    on the reader thread, when the connection ends for any reason (including ``close()``).
    """

    def __init__(self, ws: websocket.WebSocket, on_message: MessageHandler, on_close: CloseHandler) -> None:
        self._ws = ws
        self._on_message = on_message
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="kurento-ws-reader", daemon=True)

    @classmethod
    def open(
        cls, url: str, on_message: MessageHandler, on_close: CloseHandler, connect_timeout: float = 10.0
    ) -> WebSocketTransport:
        """Connect to ``url`` and start reading; raises KurentoUnavailable if the handshake fails."""
        try:
            # websocket-client's UTF-8 check is pure Python (about 1 ms per SDP); _read_loop's
            # bytes.decode checks the same in C, and fails the connection as the library would.
            ws = websocket.create_connection(
                url, timeout=connect_timeout, enable_multithread=False, skip_utf8_validation=True
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise KurentoUnavailable(f"Cannot connect to {url}: {exc}") from exc
        # Reads block until a frame or close; request timeouts are enforced by the client instead.
        ws.settimeout(None)
        transport = cls(ws, on_message, on_close)
        transport._reader.start()
        return transport

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, text: str) -> None:
        """Send one text frame; raises KurentoUnavailable if the socket is gone."""
        if self._closed.is_set():
            raise KurentoUnavailable("Connection closed")
        try:
            with self._send_lock:
                self._ws.send(text)
        except (OSError, websocket.WebSocketException) as exc:
            self._abort()
            raise KurentoUnavailable(f"Connection lost: {exc}") from exc

    def close(self) -> None:
        """Close politely, then unblock the reader; safe to call more than once and from any thread."""
        if self._closed.is_set():
            return
        try:
            with self._send_lock:
                self._ws.send_close()
        except (OSError, websocket.WebSocketException):
            pass
        self._abort()

    def _abort(self) -> None:
        # shutdown() wakes a reader blocked in recv(); a plain close() would not on Linux.
        sock = self._ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _read_loop(self) -> None:
        try:
            while True:
                opcode, payload = self._ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        # RFC 6455 §8.1: invalid UTF-8 fails the connection (1007). Requests in
                        # flight fail at once and the client reconnects, as before the skip.
                        logger.warning("invalid UTF-8 from KMS, closing the connection: %s", exc)
                        self._send_close(websocket.STATUS_INVALID_PAYLOAD)
                        break
                    self._deliver(text)
        except (OSError, websocket.WebSocketException) as exc:
            if not self._closed.is_set():
                logger.debug("websocket reader stopped: %s", exc)
        finally:
            self._closed.set()
            self._ws.shutdown()
            self._on_close(self)

    def _send_close(self, status: int) -> None:
        try:
            with self._send_lock:
                self._ws.send_close(status)
        except (OSError, websocket.WebSocketException):
            pass

    def _deliver(self, text: str) -> None:
        try:
            self._on_message(text)
        except Exception:
            # A bad frame or handler bug must not take the connection down with it.
            logger.exception("error handling a message from KMS")
