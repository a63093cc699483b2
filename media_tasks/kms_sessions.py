"""Keeping Kurento events flowing when the worker that subscribed them dies.

KMS delivers an event to the connection last bound to the KMS session that subscribed it,
and drops it when none is bound. Each worker process heartbeats the KMS sessions it holds;
a session whose heartbeat stops is claimed by one other worker, which binds a new
connection to it with `connect {sessionId}` and re-attaches the relay callbacks of every
endpoint recorded under that session.

The heartbeat is a lease. A worker that is alive but cannot renew it (cut off from MongoDB only)
must stop using its sessions before another may claim them: KMS binds a session to the last
connection that sends it a request, so its next request would pull every event of the session
back from the new holder, and endpoints it then created would be recorded under a session
another worker is answerable for. So after GIVE_UP_S without a renewal (half the time after
which others may claim), the worker retires the pooled client of each session it holds: no new
request goes through it (the pool builds a new client, a new KMS session, for the next task), but
it stays open to relay the events of the endpoints already subscribed, as a taken-over client
does, until a claim by another worker shows on the next renewal (then it is closed), or until
nothing needs it (release_idle_takeovers).
"""

from __future__ import annotations

import logging
import threading
import time

import kurento
from kurento import pool as kurento_pool
from media_tasks import recordings
from media_tasks.kms_events import listen_endpoint_events
from media_tasks.worker_identity import WORKER_ID
from models import Endpoint, KmsSession, Recording, Session, clock
from settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_STALE_S = 4.0
# Renewals come every RENEW_EVERY_S from a thread of their own, so that nothing slow in the background
# loop (the leader probing a media server that answers late) delays them; others claim after
# HEARTBEAT_STALE_S, and the holder gives up after GIVE_UP_S.
RENEW_EVERY_S = 0.5
GIVE_UP_S = HEARTBEAT_STALE_S / 2
GUARD_EVERY_S = 0.1

# Own sessions in use -> monotonic time their last renewal was sent (a lease runs from there).
_renewed: dict[str, float] = {}
# Own sessions retired for want of renewal: never registered again.
_given_up: set[str] = set()
_taken_over: dict[str, kurento.KurentoClient] = {}
_lock = threading.Lock()
_guard: threading.Thread | None = None
_renewer: threading.Thread | None = None
_renewal_error: Exception | None = None  # what the renewer's last attempt raised


def register_own(client: kurento.KurentoClient) -> None:
    """Records that this process holds the client's KMS session (once per session id)."""
    session_id = client.session_id
    if session_id is None or session_id in _renewed or session_id in _given_up:
        return
    sent = time.monotonic()
    KmsSession.register(session_id, client.url, WORKER_ID, clock.now())
    with _lock:
        _renewed[session_id] = sent
    _start_guard()


def heartbeat() -> None:
    """Renews the lease of every session this process holds; closes the relays of those another
    worker claimed meanwhile."""
    sent = time.monotonic()
    with _lock:
        expected = set(_renewed) | set(_taken_over)
    held = KmsSession.heartbeat(WORKER_ID, clock.now())
    lost = expected - KmsSession.held_by(WORKER_ID) if held != len(expected) else set()
    with _lock:
        for session_id in _renewed:
            _renewed[session_id] = sent
        claimed = [_taken_over.pop(s) for s in lost if s in _taken_over]
        for session_id in lost:
            _renewed.pop(session_id, None)
    for client in claimed:
        log.warning("KMS session %s was claimed by another worker: closing this worker's relay", client.session_id)
        client.close()


def check_renewal() -> None:
    """For the background loop, which judges the database reachable by it: renews here while no
    renewer thread runs (this process holds no session yet), else raises what the renewer's last
    attempt raised."""
    if _renewer is None or not _renewer.is_alive():
        heartbeat()
    elif _renewal_error is not None:
        raise _renewal_error


def _start_guard() -> None:
    global _guard, _renewer
    with _lock:
        if _guard is None or not _guard.is_alive():
            _guard = threading.Thread(target=_guard_loop, name="kms-session-lease", daemon=True)
            _guard.start()
        if _renewer is None or not _renewer.is_alive():
            _renewer = threading.Thread(target=_renew_loop, name="kms-session-renewal", daemon=True)
            _renewer.start()


def _renew_loop() -> None:
    global _renewal_error
    while True:
        time.sleep(RENEW_EVERY_S)
        try:
            heartbeat()
            _renewal_error = None
        except Exception as exc:  # the database away: the guard gives the sessions up meanwhile
            _renewal_error = exc
            log.warning("renewing this worker's KMS sessions failed: %s", exc)


def _guard_loop() -> None:
    # Its own thread: the background loop's renewal may itself be what hangs on the database.
    while True:
        time.sleep(GUARD_EVERY_S)
        give_up_lapsing(time.monotonic())


def give_up_lapsing(now: float) -> list[str]:
    """Retires the pooled clients of the own sessions not renewed for GIVE_UP_S (see above)."""
    with _lock:
        lapsing = [s for s, sent in _renewed.items() if now - sent > GIVE_UP_S]
        for session_id in lapsing:
            del _renewed[session_id]
            _given_up.add(session_id)
    for session_id in lapsing:
        client = kurento_pool.retire(session_id)
        log.warning(
            "KMS session %s: lease not renewed for %.1f s, no longer used for requests (relays only)",
            session_id,
            GIVE_UP_S,
        )
        if client is not None:
            with _lock:
                _taken_over[session_id] = client
    return lapsing


def take_over_stale(settings: Settings) -> list[str]:
    """Claims every KMS session whose holder stopped heartbeating; returns the ones taken."""
    taken = []
    now = clock.now()  # heartbeats are written and judged on the database's clock
    for stale in KmsSession.stale(now - HEARTBEAT_STALE_S):
        if stale.owner == WORKER_ID or not KmsSession.claim(stale.id, stale.heartbeat_at, WORKER_ID, now):
            continue
        try:
            _attach(settings, stale.id, stale.kms_url)
            taken.append(stale.id)
        except kurento.InvalidSession:
            KmsSession.forget(stale.id)  # KMS collected it (or restarted): nothing left to listen to
        except kurento.KurentoError as exc:
            log.warning("could not take over KMS session %s on %s: %s", stale.id, stale.kms_url, exc)
    return taken


def _attach(settings: Settings, kms_session_id: str, kms_url: str) -> None:
    client = kurento.KurentoClient(kms_url, session_id=kms_session_id, request_timeout=settings.kms_request_timeout_s)
    client.connect()  # connect {sessionId}: from now on KMS routes this session's events to us
    endpoints = list(Endpoint.objects(kms_session=kms_session_id, kurento__ne=None))
    for stored in endpoints:
        listen_endpoint_events(
            settings, client, stored.kurento.id, stored.session_id, stored.participant_id, stored.stream
        )
    recorders = Recording.recorders_under_kms_session(kms_session_id)
    for recording in recorders:
        recordings.listen_recorder_events(settings, client, recording)
    with _lock:
        _taken_over[kms_session_id] = client
    log.info(
        "took over KMS session %s on %s with %d endpoints and %d recorders",
        kms_session_id,
        kms_url,
        len(endpoints),
        len(recorders),
    )


def release_idle_takeovers() -> list[str]:
    """Closes the taken-over clients nothing needs any more, and forgets their KMS sessions.

    A taken-over session only relays the events of endpoints the dead worker created; once no
    record names one, its connection is idle. But closing it lets KMS collect the session, and
    with it any object only that session references: a pipeline the dead worker created. So a
    client is kept while a session not closed still stores a pipeline on its media server.
    """
    with _lock:
        held = list(_taken_over.items())
    released = []
    for kms_session_id, client in held:
        if (
            Endpoint.count_under_kms_session(kms_session_id)
            or Recording.recorders_under_kms_session(kms_session_id)
            or Session.on_server(client.url)
        ):
            continue
        with _lock:
            _taken_over.pop(kms_session_id, None)
        client.close()
        KmsSession.forget(kms_session_id)
        released.append(kms_session_id)
        log.info("released taken-over KMS session %s on %s: nothing left to relay", kms_session_id, client.url)
    return released


def taken_over() -> list[str]:
    """The KMS sessions this process only relays: held for dead workers, or its own given up."""
    with _lock:
        return list(_taken_over)
