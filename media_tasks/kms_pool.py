"""Choosing a media server for a new pipeline, and creating that pipeline exactly once.

However many tasks need a session's pipeline at the same moment (every participant rejoining
after a media server died, say), one of them wins a claim in MongoDB and creates it; the others
wait until it is stored. A claim lapses after the longest a creation can take, so a claimer that
dies only delays the others: the next one then creates the pipeline.
"""

from __future__ import annotations

import logging
import time
import uuid

import kurento
from media_tasks.kms_discovery import media_servers
from models import KurentoRef, MediaServer, Session, SessionState, clock
from settings import Settings

log = logging.getLogger(__name__)


class NoMediaServer(Exception):
    """No configured Kurento server answered."""


class SessionGone(Exception):
    """The session was closed or never existed."""


# Health records older than this are not trusted for selection (the monitor may be down).
HEALTH_STALE_S = 10.0
PROBE_TIMEOUT_S = 2.0


def probe(url: str) -> int | None:
    """Used memory (KiB) of a server that answers now, None otherwise; recorded either way.

    A short-lived client: the pooled one would wait out its reconnect on a dead server.
    """
    client = kurento.KurentoClient(url, request_timeout=PROBE_TIMEOUT_S, connect_timeout=PROBE_TIMEOUT_S)
    try:
        used = int(client.server_manager.get_used_memory())
    except kurento.KurentoError:
        MediaServer.record_failure(url, clock.now())
        return None
    finally:
        client.close()
    MediaServer.record_alive(url, used, clock.now())
    return used


def select_kms(settings: Settings, prefer: str | None = None) -> str:
    """`prefer` first if it answers (the server a session lost), else the live one with least memory.

    Uses the health monitor's records when they are fresh, and probes every server otherwise.
    """
    if prefer and probe(prefer) is not None:
        return prefer
    fresh = MediaServer.objects(url__in=media_servers(settings).urls(), checked_at__gt=clock.now() - HEALTH_STALE_S)
    alive = [server for server in fresh if server.alive and server.url != prefer]
    if alive:
        return min(alive, key=lambda server: server.used_memory_kib).url
    loads = {url: used for url in media_servers(settings).urls() if url != prefer and (used := probe(url)) is not None}
    if not loads:
        raise NoMediaServer("no Kurento media server is reachable")
    return min(loads, key=loads.__getitem__)


# How often a task waiting for another's pipeline creation looks again.
CLAIM_POLL_S = 0.02


def claim_ttl_s(settings: Settings) -> float:
    """The longest a creation takes: probing the preferred server and every other, then `create`."""
    return PROBE_TIMEOUT_S * (len(media_servers(settings).urls()) + 1) + settings.kms_request_timeout_s + 1.0


def ensure_pipeline(settings: Settings, session_id: str) -> kurento.MediaPipeline:
    """The session's pipeline, created on the least loaded server by the one caller that claims it."""
    claimer = uuid.uuid4().hex
    while True:
        session = Session.objects(id=session_id).only("state", "pipeline", "lost_kms_url").first()
        if session is None or session.state == SessionState.CLOSED:
            raise SessionGone(session_id)
        if session.pipeline is not None:
            return session.pipeline
        now = clock.now()
        if Session.claim_pipeline_creation(session_id, claimer, now, now + claim_ttl_s(settings)):
            return _create_pipeline(settings, session_id, session.lost_kms_url, claimer)
        time.sleep(CLAIM_POLL_S)


def pipeline_of(element: str) -> kurento.MediaPipeline | None:
    """The pipeline of a stored element reference, without a round trip: Kurento names a child
    "<pipeline id>/<element id>" (kurento-protocol.md). None for an id that does not say."""
    ref = KurentoRef.decode(element)
    pipeline_id, slash, _ = ref.object_id.partition("/")
    if not slash:
        return None
    return kurento.get_client(ref.kms_url).proxy(pipeline_id, kurento.MediaPipeline)  # type: ignore[return-value]


def _create_pipeline(
    settings: Settings, session_id: str, lost_kms_url: str | None, claimer: str
) -> kurento.MediaPipeline:
    try:
        url = select_kms(settings, prefer=lost_kms_url)
        pipeline = kurento.get_client(url).create_pipeline(timeout=settings.kms_request_timeout_s)
    except BaseException:
        Session.drop_pipeline_claim(session_id, claimer)
        raise
    if Session.claim_pipeline(session_id, pipeline) is None:
        # Only when our claim lapsed mid-creation and a later claimer stored first, or the
        # session closed meanwhile: one pipeline is stored either way, and ours goes.
        release_quietly(pipeline)
        session = Session.objects(id=session_id).only("pipeline").first()
        if session is None or session.pipeline is None:
            raise SessionGone(session_id)
        return session.pipeline
    log.info("pipeline %s created on %s for session %s", pipeline.id, url, session_id)
    return pipeline


def same_server(a: kurento.MediaObject, b: kurento.MediaObject) -> bool:
    """Whether two objects live on one media server. Compared by URL, not by client: a worker's client
    for a server is replaced when it gives its KMS session up (media_tasks.kms_sessions), and objects
    read before and after that carry different clients of the same server."""
    return bool(a.client.url == b.client.url)


def release_quietly(media_object: kurento.MediaObject | None) -> None:
    """Releases a Kurento object; a server that is gone has released it already."""
    if media_object is None:
        return
    try:
        media_object.release()
    except kurento.KurentoError as exc:
        log.info("release of %s failed: %s", getattr(media_object, "id", media_object), exc)
    finally:
        # Whatever the outcome, nothing here wants its events any more (the orphan sweep releases
        # what a failed release left).
        media_object.client.forget_object(media_object.id)
