"""Per-worker background loop: KMS session heartbeats and takeovers, and the jobs that
exactly one worker runs at a time (health monitor, removal of silent participants, release of
orphaned endpoints, closing empty sessions and deleting expired records)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pymongo.errors import ConnectionFailure

from media_tasks import kms_sessions, session_lifecycle
from media_tasks.kms_health import HealthMonitor
from media_tasks.lifetimes import LifetimeSweeper
from media_tasks.orphan_sweep import OrphanSweeper
from media_tasks.worker_identity import WORKER_ID
from messaging.publisher import get_publisher
from models import Lease, OutboxMessage
from models import clock as database_clock
from settings import Settings

log = logging.getLogger(__name__)

LEADER_LEASE = "kms-health"
REAP_EVERY_S = 5.0


class BackgroundLoop(threading.Thread):
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="signaling-background", daemon=True)
        self.settings = settings
        self.clock = clock  # for intervals; stored times (leases, purges) are wall-clock
        self.monitor = HealthMonitor(settings)
        self.sweeper = OrphanSweeper(settings)
        self.lifetimes = LifetimeSweeper(settings)
        self._last_takeover_release = float("-inf")
        self._stopping = threading.Event()
        self._last_reap = float("-inf")
        self._leading = False
        # Since when (self.clock) every database write of this loop succeeded; None after a failure.
        self._db_reachable_since: float | None = None

    def run(self) -> None:
        while not self._stopping.wait(self.settings.kms_health_interval_s):
            self.run_once()

    def run_once(self) -> None:
        try:
            self.tick()
        except ConnectionFailure:
            self._db_reachable_since = None
            log.warning("background tick failed: the database is unreachable", exc_info=True)
        except Exception:
            # The broker or a media server may be away for a moment; the next tick tries again.
            log.warning("background tick failed", exc_info=True)

    def db_reachable_for(self) -> float:
        """How long this worker has written to the database without a break."""
        return 0.0 if self._db_reachable_since is None else self.clock() - self._db_reachable_since

    def tick(self) -> None:
        get_publisher(self.settings).heartbeat_check()
        kms_sessions.check_renewal()
        if self._db_reachable_since is None:
            self._db_reachable_since = self.clock()
        # Kurento events are relayed outside tasks; their confirms are awaited here.
        get_publisher(self.settings).flush()
        # After a database outage every heartbeat and every poll looks old only because nobody
        # could write it. Judge silence only over a stretch in which it could have been written:
        # otherwise live workers' KMS sessions are taken over (and their later endpoints' events
        # go astray) and every participant is removed as silent.
        reachable_for = self.db_reachable_for()
        if reachable_for >= kms_sessions.HEARTBEAT_STALE_S:
            kms_sessions.take_over_stale(self.settings)
        if self.clock() - self._last_takeover_release >= self.settings.lifetime_sweep_s:
            self._last_takeover_release = self.clock()
            kms_sessions.release_idle_takeovers()
        now = database_clock.now()  # the leader's lease is judged by every worker: the database's clock
        if not Lease.hold(LEADER_LEASE, WORKER_ID, now, now + 4 * self.settings.kms_health_interval_s):
            self._leading = False
            return
        if not self._leading:
            log.info("this worker now runs the health monitor and participant clean-up")
            self._leading = True
        self.monitor.check_all()
        ticked_at = self.clock()
        if ticked_at - self._last_reap >= REAP_EVERY_S:
            self._last_reap = ticked_at
            if reachable_for >= self.settings.participant_timeout_s:
                session_lifecycle.remove_silent_participants(self.settings)
            # A queue message can only come back while its queue exists (x-expires).
            OutboxMessage.purge_acknowledged(now - self.settings.participant_queue_expires_s)
        self.sweeper.maybe_sweep(now, skip=self.monitor.failing())
        # Empty sessions are judged like silent participants: over reachable database only.
        self.lifetimes.maybe_sweep(now, reachable_for)

    def stop(self) -> None:
        self._stopping.set()
