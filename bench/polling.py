"""What both benchmark clients share: a command connection, a poll connection, and one greenlet
keeping a long poll outstanding whose messages land in the client's inbox."""

from __future__ import annotations

import gevent

from bench.http import Http
from bench.inbox import Inbox


class PollingClient:
    def __init__(self, base_url: str, name: str, poll_timeout: float) -> None:
        self.name = name
        self.cmd = Http(base_url)
        self.pollhttp = Http(base_url, timeout=poll_timeout)
        self.inbox = Inbox(name)
        self.errors = 0  # failed polls, retried
        self._poller: gevent.Greenlet | None = None

    def poll_next(self) -> None:
        """One long poll whose messages go to the inbox (the system's own request)."""
        raise NotImplementedError

    def _poll_loop(self) -> None:
        while True:
            try:
                self.poll_next()
            except Exception:  # noqa: BLE001 - count and retry, like a browser would
                self.errors += 1
                gevent.sleep(0.1)

    def start_polling(self) -> None:
        if self._poller is None:
            self._poller = gevent.spawn(self._poll_loop)

    def stop(self) -> None:
        if self._poller is not None:
            # Dead before its connection closes: closing it under a read in progress raises
            # "reentrant call" (it cost the fanout scenario its figures).
            self._poller.kill(block=True, timeout=2)
            self._poller = None
        self.cmd.close()
        self.pollhttp.close()
