"""What one benchmark client has received, stamped with its arrival time (perf_counter).

A step is timed from the moment its request left until the message that completes it was read
by the client's long poll; waiters block on an event that each new batch sets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gevent.event import Event

Predicate = Callable[[dict], bool]


class Inbox:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.entries: list[tuple[float, dict]] = []
        self._changed = Event()

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, messages: list[dict]) -> None:
        now = time.perf_counter()
        self.entries.extend((now, message) for message in messages)
        if messages:
            self._changed.set()
            self._changed = Event()

    def find(self, predicate: Predicate, start: int = 0) -> tuple[float, dict] | None:
        return next(((at, m) for at, m in self.entries[start:] if predicate(m)), None)

    def wait_for(self, predicate: Predicate, timeout: float = 20.0, start: int = 0) -> tuple[float, dict]:
        """The first message from index `start` on that matches: (arrival time, message)."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            found = self.find(predicate, seen)
            if found is not None:
                return found
            seen = len(self.entries)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.owner}: no matching message within {timeout} s")
            self._changed.wait(remaining)
