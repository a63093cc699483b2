"""Keeping Kurento events flowing when the worker that subscribed them dies.

KMS delivers an event to the connection last bound to the KMS session that subscribed it,
and drops it when none is bound. Each worker process heartbeats the KMS sessions it holds;
a session whose heartbeat stops is claimed by one other worker, which binds a new
connection to it with `connect {sessionId}` and re-attaches the relay callbacks of every
endpoint recorded under that session.
"""

from __future__ import annotations

import logging
import threading

import kurento
from media_tasks import recordings
from media_tasks.kms_events import listen_endpoint_events
from media_tasks.worker_identity import WORKER_ID
from models import Endpoint, KmsSession, Recording, Session, clock
from settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_STALE_S = 4.0

_registered: set[str] = set()
_taken_over: dict[str, kurento.KurentoClient] = {}
_lock = threading.Lock()


def register_own(client: kurento.KurentoClient) -> None:
    """Records that this process holds the client's KMS session (once per session id)."""
    session_id = client.session_id
    if session_id is None or session_id in _registered:
        return
    KmsSession.register(session_id, client.url, WORKER_ID, clock.now())
    with _lock:
        _registered.add(session_id)


def heartbeat() -> None:
    KmsSession.heartbeat(WORKER_ID, clock.now())


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
    """The KMS sessions this process holds for dead workers."""
    with _lock:
        return list(_taken_over)
