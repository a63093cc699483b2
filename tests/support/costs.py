"""Counting what a piece of work costs: MongoDB commands (a pymongo CommandListener), Kurento
round trips (wrapping the client's request entry points) and, by the caller, broker publishes.

Counts, not timings: they are deterministic, so tests may assert on them.

`MONGO` must be registered before the process creates its MongoClient (pymongo copies the global
listeners when a client is made): tests/unit/media/conftest.py does it at import time.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pymongo.monitoring

EVENT_THREAD = "kurento-events"


class MongoCommands(pymongo.monitoring.CommandListener):
    """Commands of one database by "<command>:<collection>", split by the Kurento event thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._database: str | None = None
        self.tasks: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    @contextlib.contextmanager
    def recording(self, database: str) -> Iterator[MongoCommands]:
        with self._lock:
            self._database, self.tasks, self.events = database, Counter(), Counter()
        try:
            yield self
        finally:
            with self._lock:
                self._database = None

    def take(self) -> tuple[Counter[str], Counter[str]]:
        """What was counted since the last take (task threads, event thread), and start afresh."""
        with self._lock:
            taken = self.tasks, self.events
            self.tasks, self.events = Counter(), Counter()
        return taken

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        if event.database_name != self._database or event.command_name in ("endSessions", "ping"):
            return
        target = event.command.get(event.command_name)
        key = f"{event.command_name}:{target if isinstance(target, str) else ''}"
        with self._lock:
            if event.database_name != self._database:
                return
            counts = self.events if threading.current_thread().name == EVENT_THREAD else self.tasks
            counts[key] += 1

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        pass


MONGO = MongoCommands()
_registered = False


def register_mongo_listener() -> None:
    global _registered
    if not _registered:
        pymongo.monitoring.register(MONGO)
        _registered = True


@contextlib.contextmanager
def kms_round_trips(monkeypatch: Any) -> Iterator[Counter[str]]:
    """Counts round trips to the media server by entry point: `request` (one request, one trip),
    `request_many` (a batch, one trip) and a transaction's `commit` where the client has one."""
    import kurento
    from kurento import client as client_module

    counts: Counter[str] = Counter()
    entry_points = ["request", "request_many"]
    for name in entry_points:
        original = getattr(kurento.KurentoClient, name)

        def counted(self: Any, *args: Any, __original: Any = original, __name: str = name, **kwargs: Any) -> Any:
            counts[__name] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(kurento.KurentoClient, name, counted)
    transaction = getattr(client_module, "Transaction", None) or getattr(kurento, "Transaction", None)
    if transaction is not None and hasattr(transaction, "commit"):
        original_commit = transaction.commit

        def counted_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts["commit"] += 1
            return original_commit(self, *args, **kwargs)

        monkeypatch.setattr(transaction, "commit", counted_commit)
    yield counts
