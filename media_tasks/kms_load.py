"""A bound, per worker process, on the threads one media server's tasks hold at once.

Every worker serves every shard, and every shard holds sessions of every media server. A task
holds its thread for as long as its media server takes to answer (an offer makes two to three
round trips, each up to KMS_REQUEST_TIMEOUT_S): a slow server's tasks would take every thread,
and the sessions on the other servers would wait behind them. So the offer path (process_offer,
add_candidates) enters its media server's gate once it knows the server, before any KMS call
(only a first publish creates its pipeline first); a server that already holds KMS_THREAD_SHARE
of the process's threads gets its task deferred: put back on its queue for a second or more (defer_for) by
media_tasks.base_task (same task id, the failure retries untouched) instead of blocking a
thread. Deferring stops after DEFER_WINDOW_S: the task then waits for its server like before,
so a slow server's offers are answered (or get their error) within that much more.

Costs nothing more in the usual case: a lock and a counter per task, no database operation, no
message. Only one slow server is contained: two of them may still hold every thread together.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from media_tasks.kms_discovery import media_servers
from settings import Settings

# How long a deferred task waits on the broker: 1 s, doubling with each deferral of the same task up to
# DEFER_MAX_S, so that the tasks of a server slow for long do not cycle through the queue many times a
# second (native delayed delivery counts whole seconds).
DEFER_S = 1
DEFER_MAX_S = 4
# Tasks stop being deferred this long after their first deferral (in `kms_busy_since`).
DEFER_WINDOW_S = 30.0


def defer_for(deferrals: int) -> int:
    """Seconds to defer a task already deferred `deferrals` times."""
    return min(DEFER_MAX_S, DEFER_S << min(deferrals, 8))


class MediaServerBusy(Exception):
    """The task's media server holds its share of this process's threads: defer the task."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url} holds its share of this worker's threads")
        self.url = url


_lock = threading.Lock()
_in_flight: dict[str, int] = {}
_task = threading.local()  # .held: the servers this thread's task entered; .deferrable


def limit(settings: Settings) -> int:
    """Tasks of one server in flight in this process at once; 0 = no bound."""
    threads = settings.worker_concurrency
    if threads < 2 or settings.kms_thread_share >= 1:
        return 0
    return max(1, min(threads - 1, math.floor(threads * settings.kms_thread_share)))


@contextmanager
def task_scope(deferrable: bool) -> Iterator[None]:
    """One task's run: what it entered is left when it ends, however it ends."""
    _task.held, _task.deferrable = [], deferrable
    try:
        yield
    finally:
        held, _task.held = _task.held, None
        with _lock:
            for url in held:
                _in_flight[url] -= 1


def enter(settings: Settings, url: str) -> None:
    """Counts the running task against `url`'s share; raises MediaServerBusy to defer it.

    Outside a task scope (tests, the background loop), and for a server the task entered
    already, it does nothing."""
    held: list[str] | None = getattr(_task, "held", None)
    if held is None or url in held:
        return
    bound = limit(settings)
    deferrable = bool(bound) and _task.deferrable
    # Only with another server to keep threads for; read only when busy (it may ask DNS), unlocked.
    if deferrable and _in_flight.get(url, 0) >= bound:
        deferrable = len(media_servers(settings).urls()) > 1
    with _lock:
        if deferrable and _in_flight.get(url, 0) >= bound:
            raise MediaServerBusy(url)
        _in_flight[url] = _in_flight.get(url, 0) + 1
    held.append(url)
