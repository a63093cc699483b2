"""The KMS health monitor and what follows a media server's death.

One worker at a time (it holds the "kms-health" lease) pings every configured server every
KMS_HEALTH_INTERVAL_S and records status and used memory in MongoDB. When a server stops
answering, every open session on it goes to `media_lost`, forgets its pipeline and
endpoints, and its participants get `mediaServerLost`; they rejoin to get fresh media.
"""

from __future__ import annotations

import logging

import kurento
from media_tasks import recordings
from media_tasks.kms_discovery import media_servers
from messaging import messages
from messaging.publisher import get_publisher
from models import Endpoint, MediaServer, Participant, Session, clock
from settings import Settings

log = logging.getLogger(__name__)

# Two failed probes in a row: one lost ping on a busy machine must not end everyone's media.
FAILURES_BEFORE_DEAD = 2


class HealthMonitor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, kurento.KurentoClient] = {}
        self._failures: dict[str, int] = {}

    def failing(self) -> set[str]:
        """The servers whose last probe failed: nothing else in this loop should wait on them."""
        return {url for url, failures in self._failures.items() if failures}

    def check_all(self) -> None:
        for url in media_servers(self.settings).urls():
            self.check(url)

    def check(self, url: str) -> None:
        now = clock.now()
        client = self._clients.get(url)
        if client is not None and not client.connected:
            # Its connection dropped (a dead server closes it at once): asking through it would
            # only wait out its reconnect, a whole request timeout, before counting a failure.
            self._drop_client(url)
        try:
            used = self._client(url).server_manager.get_used_memory()
        except kurento.KurentoError:
            self._drop_client(url)
            self._failures[url] = self._failures.get(url, 0) + 1
            if self._failures[url] >= FAILURES_BEFORE_DEAD:
                if MediaServer.record_failure(url, now):
                    log.error("media server %s stopped answering", url)
                fail_over(self.settings, url)
            return
        self._failures[url] = 0
        MediaServer.record_alive(url, int(used), now)

    def _client(self, url: str) -> kurento.KurentoClient:
        if url not in self._clients:
            timeout = max(0.5, self.settings.kms_health_interval_s)
            self._clients[url] = kurento.KurentoClient(url, request_timeout=timeout, connect_timeout=timeout)
        return self._clients[url]

    def _drop_client(self, url: str) -> None:
        client = self._clients.pop(url, None)
        if client is not None:
            client.close()


def fail_over(settings: Settings, kms_url: str) -> int:
    """Moves every open session of a dead server to media_lost; returns how many were moved."""
    moved = 0
    for session_id in Session.on_server(kms_url):
        if not Session.mark_media_lost(session_id, kms_url):
            continue
        Endpoint.forget_all_in(session_id)
        recordings.lose_all_in(settings, session_id)
        Participant.stop_all_publishing(session_id)
        get_publisher(settings).to_session(session_id, messages.media_server_lost())
        moved += 1
    if moved:
        log.warning("%d session(s) lost their media on %s", moved, kms_url)
    return moved
