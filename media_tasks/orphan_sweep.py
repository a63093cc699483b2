"""Releasing WebRtcEndpoints and RecorderEndpoints that no record refers to.

A worker killed between creating an endpoint on the KMS and storing it in its Endpoint record
(`negotiation._install_endpoint`), or between storing a replacement and releasing the endpoint
it replaced, leaves an endpoint nothing points at: it would hold KMS memory and ports until its
pipeline is released. The worker that leads the background jobs sweeps them up: every
ORPHAN_SWEEP_S it lists the children of every stored pipeline (one pipelined round trip per
media server) and releases an endpoint that no Endpoint record has named in two sweeps at least
ORPHAN_GRACE_S apart. An endpoint being installed is stored within moments of its creation, so
the grace never catches one; and counting on our own clock, not the KMS's creation time, keeps
clock skew between hosts out of it.

Recorders are swept the same way: one whose start lost the race to a stop, or whose release failed
after its recording ended (models.recording keeps the recorder of a running recording only).

Only children of the pipelines our sessions hold are swept: other applications' objects on a
shared KMS are never touched. And the pipelines of a media server given up for dead
(`Session.abandoned_pipelines`, kept by the fail-over) are released once it answers again: a
server that was paused or cut off, not crashed, still holds them (issue 16).

A media server that does not answer must not hold up the loop that runs this (the health monitor
shares it and would never count the second failed probe): servers the monitor currently finds
failing are skipped, and every request here waits SWEEP_REQUEST_TIMEOUT_S at most.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import kurento
from models import Endpoint, Recording, Session, SessionState
from models.fields import KurentoRef
from settings import Settings

log = logging.getLogger(__name__)

# What is swept: endpoints (Endpoint records) and recorders (Recording records).
SWEPT_TYPES = ("_kurento.WebRtcEndpoint", "_kurento.RecorderEndpoint")
SWEEP_REQUEST_TIMEOUT_S = 1.0


class OrphanSweeper:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._unreferenced_since: dict[str, float] = {}  # "<kms url>#<endpoint id>" -> first seen
        self._last_sweep = 0.0

    def maybe_sweep(self, now: float, skip: Collection[str] = ()) -> int:
        """`skip`: media servers not to ask now (the health monitor finds them failing)."""
        if now - self._last_sweep < self.settings.orphan_sweep_s:
            return 0
        self._last_sweep = now
        return self.sweep(now, skip) + release_abandoned_pipelines(skip)

    def sweep(self, now: float, skip: Collection[str] = ()) -> int:
        """Releases the endpoints unreferenced for ORPHAN_GRACE_S; returns how many."""
        live = self._children_of_stored_pipelines(skip)
        recorded = _recorded_refs()
        unreferenced = live - recorded
        # Forget what was named meanwhile (or is gone), remember what is newly unnamed.
        self._unreferenced_since = {ref: self._unreferenced_since.get(ref, now) for ref in unreferenced}
        released = 0
        for ref, since in list(self._unreferenced_since.items()):
            if now - since < self.settings.orphan_grace_s or ref in _recorded_refs([ref]):
                continue
            decoded = KurentoRef.decode(ref)
            try:
                kurento.get_client(decoded.kms_url).request(
                    "release", {"object": decoded.object_id}, timeout=SWEEP_REQUEST_TIMEOUT_S
                )
                released += 1
                log.warning(
                    "released orphaned endpoint %s on %s (no record named it for %.0f s)",
                    decoded.object_id,
                    decoded.kms_url,
                    now - since,
                )
            except kurento.KurentoError as exc:
                log.info("could not release orphaned endpoint %s: %s", decoded.object_id, exc)
            del self._unreferenced_since[ref]
        return released

    @staticmethod
    def _children_of_stored_pipelines(skip: Collection[str]) -> set[str]:
        by_server: dict[str, list[str]] = {}
        for raw in Session.objects(state__ne=SessionState.CLOSED).scalar("pipeline"):
            if raw is not None and raw.client.url not in skip:
                by_server.setdefault(raw.client.url, []).append(raw.id)
        children: set[str] = set()
        for url, pipeline_ids in by_server.items():
            calls: list[tuple[str, dict[str, Any] | None]] = [
                ("invoke", {"object": pid, "operation": "getChildren"}) for pid in pipeline_ids
            ]
            try:
                results = kurento.get_client(url).request_many(calls, timeout=SWEEP_REQUEST_TIMEOUT_S)
            except kurento.KurentoError as exc:
                log.info("orphan sweep skipped %s: %s", url, exc)
                continue
            for result in results:
                if isinstance(result, BaseException):
                    continue  # that pipeline is gone (its session is being closed or moved)
                children.update(f"{url}#{child}" for child in result.get("value") or [] if child.endswith(SWEPT_TYPES))
        return children


def release_abandoned_pipelines(skip: Collection[str] = ()) -> int:
    """Releases the pipelines the fail-over abandoned on servers that answer again (one pipelined
    round trip per server); forgets those released or gone (a restarted server has none). A server
    still silent keeps its list for the next sweep. Returns how many were released."""
    by_server: dict[str, list[tuple[str, str, str]]] = {}
    for session_id, ref in Session.abandoned():
        decoded = KurentoRef.decode(ref)
        if decoded.kms_url not in skip:
            by_server.setdefault(decoded.kms_url, []).append((session_id, ref, decoded.object_id))
    released = 0
    for url, entries in by_server.items():
        calls: list[tuple[str, dict[str, Any] | None]] = [("release", {"object": oid}) for _, _, oid in entries]
        try:
            results = kurento.get_client(url).request_many(calls, timeout=SWEEP_REQUEST_TIMEOUT_S)
        except kurento.KurentoError as exc:
            log.info("abandoned pipelines on %s kept for later: %s", url, exc)
            continue
        for (session_id, ref, object_id), result in zip(entries, results, strict=True):
            if isinstance(result, kurento.KurentoUnavailable):
                continue
            if isinstance(result, BaseException):
                log.info("abandoned pipeline %s on %s is gone: %s", object_id, url, result)
            else:
                released += 1
                log.warning("released pipeline %s abandoned on %s, which answers again", object_id, url)
            Session.forget_abandoned(session_id, ref)
    return released


def _recorded_refs(among: list[str] | None = None) -> set[str]:
    return Endpoint.recorded_kurento_refs(among) | Recording.recorded_kurento_refs(among)
