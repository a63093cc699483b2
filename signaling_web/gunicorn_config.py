"""gunicorn hooks of the web tier (`gunicorn --config python:signaling_web.gunicorn_config`)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

# How often a worker process looks whether gunicorn began its graceful shutdown.
SHUTDOWN_WATCH_S = 0.2


def post_worker_init(worker: Any) -> None:
    """On SIGTERM gunicorn stops accepting and waits, up to --graceful-timeout, for the requests it
    holds: long polls would hold it for their whole `wait`. A watcher (a greenlet under gevent)
    sees the worker stop being alive and releases them at once (messaging.mailbox.Mailbox.drain)."""
    mailbox = getattr(worker.wsgi, "extensions", {}).get("signaling_mailbox")
    if mailbox is None:
        return

    def watch() -> None:
        while worker.alive:
            time.sleep(SHUTDOWN_WATCH_S)
        mailbox.drain()

    threading.Thread(target=watch, name="shutdown-watch", daemon=True).start()


def child_exit(_server: Any, worker: Any) -> None:
    """With several processes sharing metrics files (PROMETHEUS_MULTIPROC_DIR), a process that
    exits must leave the live gauges: otherwise the long polls it held count as waiting forever."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
