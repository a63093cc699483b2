"""One shared KurentoClient per KMS URL per process.

Celery prefork children inherit the parent's clients, but not their threads, and their sockets
are shared with the parent; the pid check makes each child build its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from kurento.client import KurentoClient

_lock = threading.Lock()
_clients: dict[str, KurentoClient] = {}
_pid = os.getpid()


def get_client(url: str, **options: Any) -> KurentoClient:
    """The process-wide client for ``url``; ``options`` only apply when it is first created."""
    global _pid
    with _lock:
        if _pid != os.getpid():
            # Inherited clients belong to the parent: abandon them without closing the shared sockets.
            _clients.clear()
            _pid = os.getpid()
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = KurentoClient(url, **options)
        return client


def retire(session_id: str) -> KurentoClient | None:
    """Takes the pooled client of KMS session ``session_id`` out of the pool, open: the next
    `get_client` of its URL builds a new one (a new KMS session); the caller keeps the old one."""
    with _lock:
        for url, client in list(_clients.items()):
            if client.session_id == session_id:
                del _clients[url]
                return client
    return None


def close_all() -> None:
    """Close every pooled client (for shutdown hooks and tests)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _reset_after_fork() -> None:
    # The lock may have been held by another thread at fork time; the child must not inherit it held.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
