"""Sending tasks to the workers, routed by session, never showing SDP or tokens in Flower.

A request sent again under its Idempotency-Key after an answer it never got (a 503 while the
broker was away, say) may enqueue its task a second time. Each enqueue is a task of its own,
but both carry a root id derived from the key (IDEMPOTENT_ROOT + hash), and a task with such a
root publishes under message ids derived from it (media_tasks.base_task, messaging.publisher),
so what the second one publishes reaches each participant once.
"""

from __future__ import annotations

import hashlib
import time

from flask import g, has_request_context

from media_tasks.app import app as celery_app
from messaging.publisher import IDEMPOTENT_ROOT


def _root_id() -> str | None:
    """The same for every enqueue of the same request under the same key; None without a key."""
    key = g.get("idempotency_key") if has_request_context() else None
    if key is None:
        return None
    index = g.get("tasks_enqueued", 0)
    g.tasks_enqueued = index + 1
    return IDEMPOTENT_ROOT + hashlib.sha256(f"{key}\n{index}".encode()).hexdigest()[:32]


def enqueue(task_name: str, *, hide: tuple[str, ...] = (), **kwargs) -> None:
    shown = {k: ("<hidden>" if k in hide else v) for k, v in kwargs.items()}
    # enqueued_at: workers measure the dispatch delay (signaling_task_dispatch_seconds) from it,
    # which spares every request a confirmed `task-sent` event on the broker.
    celery_app.send_task(
        task_name,
        kwargs=kwargs,
        kwargsrepr=repr(shown),
        argsrepr="()",
        headers={"enqueued_at": time.time()},
        root_id=_root_id(),
    )
