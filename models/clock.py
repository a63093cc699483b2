"""One clock for the times that one process writes and another judges: the database's.

Leases, heartbeats, debounce clocks and "last seen" times are written by one process and compared by
another, often on another machine; clocks that disagree by a few seconds (a VM that drifted, NTP not
converged) would make a live worker's KMS sessions look stale, or a connection flap look like a failure.
Every such time comes from `now()`: this machine's clock corrected by its offset to the MongoDB primary's
(`hello.localTime`, taken at the middle of the round trip), measured once per SYNC_S per process. The
times stay floats (epoch seconds), so the stored fields and their indexes are unchanged; only processes
with a skewed clock see a difference. A failed measurement keeps the last offset (0 before the first):
a database that cannot answer `hello` fails the operation the time is for anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC

from mongoengine.connection import ConnectionFailure as MongoEngineConnectionError
from pymongo.errors import PyMongoError

from models.connection import current_alias, current_db

log = logging.getLogger(__name__)

SYNC_S = 60.0
RETRY_S = 5.0
# A measurement whose round trip took longer than this says little about the offset (a paused
# server, a stalled network): it is dropped and the last offset kept.
MAX_ROUND_TRIP_S = 0.5


@dataclass
class _Offset:
    seconds: float = 0.0
    next_sync: float = 0.0  # time.monotonic()


_offsets: dict[str, _Offset] = {}
_lock = threading.Lock()


def now() -> float:
    """Epoch seconds on the database's clock (this process's clock plus its measured offset)."""
    alias = current_alias()
    with _lock:
        offset = _offsets.setdefault(alias, _Offset())
        due = time.monotonic() >= offset.next_sync
        if due:  # one measurement at a time: the others use the last offset meanwhile
            offset.next_sync = time.monotonic() + RETRY_S
    if due:
        _measure(offset)
    return time.time() + offset.seconds


def offset_s() -> float:
    """The offset `now()` applies in this process (for /metrics and tests)."""
    now()
    return _offsets[current_alias()].seconds


def _measure(offset: _Offset) -> None:
    try:
        sent = time.time()
        server = current_db().client.admin.command("hello")["localTime"]
        received = time.time()
    except (PyMongoError, MongoEngineConnectionError) as exc:  # unreachable, or not connected yet
        log.info("database clock not measured (%s); keeping offset %.3f s", exc, offset.seconds)
        return
    if received - sent > MAX_ROUND_TRIP_S:
        return
    if server.tzinfo is None:  # a client without tz_aware: BSON dates are UTC
        server = server.replace(tzinfo=UTC)
    measured = server.timestamp() - (sent + received) / 2
    if abs(measured - offset.seconds) > 0.5:
        log.info("this process's clock is %.3f s off the database's", -measured)
    offset.seconds = measured
    offset.next_sync = time.monotonic() + SYNC_S


def reset() -> None:
    """Forgets every measured offset (tests that change the clock)."""
    with _lock:
        _offsets.clear()
