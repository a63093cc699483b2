"""Exceptions raised by the Kurento client.

KMS reports failures as JSON-RPC errors with a numeric code and an optional ``data.type``
(kurento-protocol.md §3). The codes callers act on get their own subclass; everything else is a
plain ``KurentoError``. Connection failures and timeouts are ``KurentoUnavailable`` so that Celery
tasks can retry exactly those (``autoretry_for=(KurentoUnavailable,)``).
"""

from __future__ import annotations

from typing import Any


class KurentoError(Exception):
    """A JSON-RPC error returned by KMS: ``code``, ``message`` and the optional ``data`` dict."""

    def __init__(self, code: int | None, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data
        # Set when the error is a failed op of a committed Transaction: the op's index, and the
        # result values of the ops before it (they ran: objects they created exist).
        self.failed_index: int | None = None
        self.completed: list[Any] = []

    @property
    def type(self) -> str | None:
        """KMS error name such as ``MEDIA_OBJECT_NOT_FOUND``; absent for plain JSON-RPC errors."""
        if isinstance(self.data, dict):
            value = self.data.get("type")
            return value if isinstance(value, str) else None
        return None

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        suffix = f", {self.type}" if self.type else ""
        return f"{self.message} (code {self.code}{suffix})"


class ObjectNotFound(KurentoError):
    """40101: the object id is unknown or was released."""


class AlreadyNegotiated(KurentoError):
    """40208: processOffer/generateOffer was already called on this endpoint."""


class InvalidSession(KurentoError):
    """40007: ``connect`` named a sessionId the server does not know (it was collected or KMS restarted)."""


class KurentoUnavailable(KurentoError):
    """KMS could not be reached, the connection dropped, or a request timed out. Safe to retry."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)
        # Keep args matching __init__ so the exception survives pickling (Celery result backends).
        self.args = (message,)


class RequestNotSent(KurentoUnavailable):
    """The request never left (no connection until its deadline): nothing of it ran on the server.

    Any other KurentoUnavailable of a request may come after KMS received it (and ran some of it).
    """
