"""Lifetimes: empty sessions end, and records outlive their use only by a retention period.

The leading worker (media_tasks.background) runs this every LIFETIME_SWEEP_S:

- A session nobody has held a place in for EMPTY_SESSION_TIMEOUT_S (since its creation, or since
  its last participant left) is closed as if deleted: marked closed atomically against a racing
  join, then the DELETE path's `media.close_session` task (sessionClosed to anyone left, pipeline
  released). Only after as long a stretch of reachable database: during an outage nobody could
  join, so an outage does not count as emptiness.
- Idempotency records older than IDEMPOTENCY_TTL_S, and closed sessions, task-start records and
  minted join tokens expired more than RETENTION_S ago, are deleted: by their TTL indexes on
  MongoDB (made here, models.retention) and by this sweep on the nx-27017 stand-in, which never
  applies TTL indexes.
- Sessions stored before the listing existed get their place in it (Session.backfill_list_keys).
- A place reserved by a join that never settled it within ADMISSION_GRACE_S (the join was cut off by
  a paused database or a killed web process) is given back, and the participant it may have stored
  removed (release_cut_off_joins).
- Participants that left RETENTION_S ago are deleted with their outbox entries (no TTL index: the
  entries must go with their participant, which MongoDB cannot cascade).

Every worker also closes the clients it took over from dead workers once they relay nothing
(media_tasks.kms_sessions.release_idle_takeovers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from media_tasks.dispatch import task_queue
from models import IdempotencyRecord, JoinGrant, OutboxMessage, Participant, Session, TaskStart
from models.retention import ensure_ttl_index
from settings import Settings

log = logging.getLogger(__name__)

PURGE_BATCH = 500
# Longer than any join takes to settle its place: its database operations and broker declarations
# are each bounded by timeouts of seconds (MONGODB_SOCKET_TIMEOUT_S, TASK_PUBLISH_TIMEOUT_S).
ADMISSION_GRACE_S = 60.0


@dataclass
class SweepReport:
    closed_sessions: list[str]
    cut_off_joins: int = 0
    idempotency_records: int = 0
    sessions: int = 0
    task_starts: int = 0
    join_grants: int = 0
    participants: int = 0
    outbox_entries: int = 0
    list_keys: int = 0


def close_empty_sessions(settings: Settings, now: float) -> list[str]:
    """Closes the sessions empty for EMPTY_SESSION_TIMEOUT_S, as DELETE does; returns their ids."""
    cutoff = now - settings.empty_session_timeout_s
    closed = []
    for session_id in Session.empty_before(cutoff):
        if Session.close_if_empty(session_id, cutoff) is None:
            continue  # someone joined meanwhile, or another close came first
        Participant.mark_all_left(session_id, "session_closed")  # as signaling_web.admission.close
        # The task tells participants and the backend (webhook `sessionClosed`, reason "empty").
        task_queue(settings).close_session(session_id=session_id, reason="empty")
        log.info("session %s closed: empty", session_id)
        closed.append(session_id)
    return closed


def release_cut_off_joins(now: float) -> int:
    """Gives back the places of joins cut off before they settled (see models.session); returns how many.
    Each revocation is conditional on the entry, so a join settling at the same moment keeps its place."""
    released = 0
    for session_id, entry in Session.stale_admissions(now - ADMISSION_GRACE_S):
        if Session.revoke_admission(session_id, entry, now):
            participant_id = entry.partition(" ")[0]
            Participant.discard(participant_id)  # stored, perhaps, but never told it joined
            log.info("session %s: the place of a join cut off (%s) given back", session_id, participant_id)
            released += 1
    return released


def ensure_ttl_indexes(settings: Settings) -> None:
    ensure_ttl_index(IdempotencyRecord, "stored_at", settings.idempotency_ttl_s)
    ensure_ttl_index(Session, "closed_at", settings.retention_s)
    ensure_ttl_index(TaskStart, "started_at", settings.retention_s)
    ensure_ttl_index(JoinGrant, "expires_at", settings.retention_s)


def purge_expired(settings: Settings, now: float, report: SweepReport) -> None:
    """Deletes what the TTL indexes delete on MongoDB, plus left participants with their outbox."""
    at = datetime.fromtimestamp(now, UTC)
    retained_since = at - timedelta(seconds=settings.retention_s)
    report.idempotency_records = IdempotencyRecord.purge_stored_before(
        at - timedelta(seconds=settings.idempotency_ttl_s)
    )
    report.sessions = Session.purge_closed(retained_since)
    report.task_starts = TaskStart.purge_started_before(retained_since)
    report.join_grants = JoinGrant.purge_expired_before(retained_since)
    while True:
        gone = Participant.left_before(retained_since, limit=PURGE_BATCH)
        if not gone:
            break
        # The outbox first: a crash in between leaves a participant whose entries a later sweep finds.
        report.outbox_entries += OutboxMessage.purge_of(gone)
        report.participants += Participant.purge_left(gone)
        if len(gone) < PURGE_BATCH:
            break


class LifetimeSweeper:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last_sweep = float("-inf")
        self._indexed = False

    def maybe_sweep(self, now: float, db_reachable_for: float) -> SweepReport | None:
        if now - self._last_sweep < self.settings.lifetime_sweep_s:
            return None
        self._last_sweep = now
        return self.sweep(now, db_reachable_for)

    def sweep(self, now: float, db_reachable_for: float) -> SweepReport:
        if not self._indexed:
            ensure_ttl_indexes(self.settings)
            self._indexed = True
        report = SweepReport(closed_sessions=[])
        if db_reachable_for >= self.settings.empty_session_timeout_s:
            report.closed_sessions = close_empty_sessions(self.settings, now)
        report.cut_off_joins = release_cut_off_joins(now)
        purge_expired(self.settings, now, report)
        report.list_keys = Session.backfill_list_keys()  # one indexed read once none is left
        if (
            report.closed_sessions
            or report.cut_off_joins
            or report.sessions
            or report.participants
            or report.idempotency_records
        ):
            log.info("lifetime sweep: %s", report)
        return report
