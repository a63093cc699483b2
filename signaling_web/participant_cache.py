"""Which participants this web process recently saw joined, so offers and candidates need no read.

A participant token is signed and binds session and participant (signaling_web.auth); what it
cannot say is whether the participant has left since, or its session closed. That takes a read,
which offers and candidates would pay on every request. This cache answers "still joined" for
PARTICIPANT_CACHE_S after a read (or a join) that saw it so; anything else (unknown, left, closed)
is never cached, so every refusal (404, 409) is answered from a fresh read.

Staleness is bounded and safe for offers and candidates only: a leave, a removal (by a moderator
or the API key) or a close handled by this process forgets at once, so the token is refused (409)
here immediately; one handled elsewhere (another web process, a worker's timeout removal or
empty-session close) is seen at most PARTICIPANT_CACHE_S later. An offer accepted in that window
is harmless: the worker checks again after the answer and releases the endpoint of one who left
(media_tasks.negotiation.process_offer), and candidates go to an endpoint the leave releases, or
are dropped when there is none (add_candidates). Requests whose effect others would see
(messages, rejoin, leave and removal, reading or closing the session) always read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from flask import current_app

MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class Ticket:
    """Taken before a read: when it started, and how many forgets had happened by then."""

    at: float
    forgets: int


class ParticipantCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._until: dict[str, tuple[str, float]] = {}  # participant id -> (session id, trusted until)
        self._forgets = 0
        self._lock = threading.Lock()

    def is_joined(self, session_id: str, participant_id: str) -> bool:
        entry = self._until.get(participant_id)
        return entry is not None and entry[0] == session_id and entry[1] > time.monotonic()

    def ticket(self) -> Ticket:
        return Ticket(time.monotonic(), self._forgets)

    def remember(self, session_id: str, participant_id: str, ticket: Ticket) -> None:
        """A read that began at `ticket` saw the participant joined. Ignored if any forget came
        since: that read may predate a leave this process just handled."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if self._forgets != ticket.forgets:
                return
            if len(self._until) >= MAX_ENTRIES:
                now = time.monotonic()
                self._until = {k: v for k, v in self._until.items() if v[1] > now}
                if len(self._until) >= MAX_ENTRIES:
                    self._until.clear()  # only costs reads
            self._until[participant_id] = (session_id, ticket.at + self.ttl_s)

    def forget(self, participant_id: str) -> None:
        with self._lock:
            self._forgets += 1
            self._until.pop(participant_id, None)

    def forget_session(self, session_id: str) -> None:
        with self._lock:
            self._forgets += 1
            self._until = {k: v for k, v in self._until.items() if v[0] != session_id}


def participant_cache() -> ParticipantCache:
    cache: ParticipantCache = current_app.extensions["signaling_participant_cache"]
    return cache
