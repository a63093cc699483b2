"""gunicorn hooks of the web tier (`gunicorn --config python:signaling_web.gunicorn_config`)."""

from __future__ import annotations

import os
from typing import Any


def child_exit(_server: Any, worker: Any) -> None:
    """With several processes sharing metrics files (PROMETHEUS_MULTIPROC_DIR), a process that
    exits must leave the live gauges: otherwise the long polls it held count as waiting forever."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
