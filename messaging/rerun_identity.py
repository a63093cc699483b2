"""What makes a re-run of the same work publish the same messages: one scheme, three steps.

A task runs again after a redelivery or a retry (same task id), and a request sent again under
its Idempotency-Key after an answer it never got (a 503 while the broker was away, say) may
enqueue its task a second time (a new task id). Participants must not see either twice, so:

1. Enqueue (`media_tasks.dispatch`): under an Idempotency-Key, every task a request enqueues gets
   a root id derived from the key and its place among the request's enqueues (`enqueue_root_id`),
   the same on every repeat of the request.
2. Run (`media_tasks.base_task`): a task's seed is that root id when it has one, else its own id
   (`task_seed`), kept across redeliveries and retries.
3. Publish (`messaging.publisher`): inside a task (`publishing_for_task`), a message's id derives
   from the seed, its place among the task's publishes and its content (`message_id`), so the
   copy a re-run publishes has the id of the first and the participant's outbox drops it
   (messaging.mailbox); a re-run that publishes something else publishes it under a new id.
   Outside tasks (Kurento events) ids are random.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Iterator

IDEMPOTENT_ROOT = "idem-"


def enqueue_root_id(idempotency_key: str, index: int) -> str:
    """The root id of the `index`-th task a request enqueues under `idempotency_key`."""
    return IDEMPOTENT_ROOT + hashlib.sha256(f"{idempotency_key}\n{index}".encode()).hexdigest()[:32]


def task_seed(task_id: str | None, root_id: str | None, parent_id: str | None) -> str:
    """What a task run's message ids derive from: the same for every run of the same work.

    A redelivery or a retry keeps the task id; a request enqueued again under its
    Idempotency-Key is a new task with the same key-derived root id (a task spawned by another
    task inherits the root, so it keeps its own id).
    """
    root = root_id or ""
    if root.startswith(IDEMPOTENT_ROOT) and not parent_id:
        return root
    return task_id or uuid.uuid4().hex


class TaskScope:
    """One run of a task on one thread: what its message ids derive from, and (kept by
    messaging.publisher) the confirms it still awaits, so that its flush waits for exactly its own
    messages and fails for exactly its own losses."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.published = 0
        # (channel generation, delivery tag) of each publish not yet confirmed.
        self.awaiting: set[tuple[int, int]] = set()
        # Why a message of this scope may be lost (nack, channel closed unconfirmed); None if none.
        self.lost: str | None = None


class _TaskPublishing(threading.local):
    scope: TaskScope | None = None


_task = _TaskPublishing()


@contextlib.contextmanager
def publishing_for_task(seed: str) -> Iterator[TaskScope]:
    """Messages published by this thread meanwhile get ids a re-run of the task reproduces."""
    _task.scope = TaskScope(seed)
    try:
        yield _task.scope
    finally:
        _task.scope = None


def current_task_scope() -> TaskScope | None:
    """The scope of the task running on this thread; None outside tasks (Kurento event thread)."""
    return _task.scope


def message_id(exchange: str, routing_key: str, body: str) -> str:
    scope = _task.scope
    if scope is None:
        return uuid.uuid4().hex
    scope.published += 1
    material = f"{scope.seed}\n{scope.published}\n{exchange}\n{routing_key}\n{body}".encode()
    return hashlib.sha256(material).hexdigest()[:32]
