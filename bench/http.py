"""A small keep-alive HTTP/1.1 JSON client (stdlib http.client), cheap enough for a load generator.

Under gevent's monkey-patching (done by `python -m bench` only) every call yields while it waits,
so thousands of these can hold long polls in one process. The same client drives our service
and Janus, so client overhead is equal on both sides.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

_RETRYABLE = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    http.client.BadStatusLine,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class HttpError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {str(body)[:300]}")
        self.status = status
        self.body = body


class Http:
    """One persistent connection; reconnects once when the server closed an idle keep-alive."""

    def __init__(self, base_url: str, timeout: float = 45.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def connect(self) -> None:
        """Open the connection now, so that the first call does not pay for it."""
        conn = self._connection()
        if conn.sock is None:
            conn.connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict | None = None,
        expect: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        hdrs = {"Content-Type": "application/json"} if payload is not None else {}
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            conn = self._connection()
            fresh = conn.sock is None
            try:
                conn.request(method, self.prefix + path, body=payload, headers=hdrs)
                response = conn.getresponse()
                raw = response.read()
                break
            except _RETRYABLE:
                self.close()
                if attempt or fresh:
                    raise
            except Exception:
                self.close()
                raise
        if response.will_close:
            self.close()
        data = json.loads(raw) if raw else None
        if response.status not in expect:
            raise HttpError(response.status, data)
        return data
