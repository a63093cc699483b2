"""Celery tasks: thin wrappers that unpack ids and call one domain function.

Each takes `session_id` first, which the router hashes onto a shard queue.
"""

from __future__ import annotations

from kombu.exceptions import OperationalError as KombuOperationalError
from pymongo.errors import ConnectionFailure

import kurento
from media_tasks import connection_watch, membership, negotiation
from media_tasks.app import app
from media_tasks.kms_pool import NoMediaServer, SessionGone
from settings import load_settings

settings = load_settings()

# Failures worth another try a little later: the media server, broker or database is away for a moment.
RETRYABLE = (
    kurento.KurentoUnavailable,
    NoMediaServer,
    ConnectionError,
    OSError,
    ConnectionFailure,
    KombuOperationalError,
)
RETRY = {
    "autoretry_for": RETRYABLE,
    "retry_backoff": 0.5,
    "retry_backoff_max": 5,
    "max_retries": 5,
    "retry_jitter": True,
}


@app.task(name="media.create_session", **RETRY)
def create_session(session_id: str) -> None:
    membership.prepare_session(settings, session_id)


@app.task(name="media.announce_join", **RETRY)
def announce_join(session_id: str, participant_id: str, display_name: str) -> None:
    try:
        membership.announce_join(settings, session_id, participant_id, display_name)
    except SessionGone:
        pass


@app.task(name="media.process_offer", **RETRY)
def process_offer(session_id: str, participant_id: str, stream: str, sdp: str, request_id: str) -> None:
    try:
        negotiation.process_offer(settings, session_id, participant_id, stream, sdp, request_id)
    except SessionGone:
        pass


@app.task(name="media.add_candidates", **RETRY)
def add_candidates(session_id: str, participant_id: str, stream: str, candidates: list[dict]) -> None:
    negotiation.add_candidates(settings, session_id, participant_id, stream, candidates)


@app.task(name="media.finish_leave", **RETRY)
def finish_leave(session_id: str, participant_id: str, reason: str, was_publishing: bool) -> None:
    membership.finish_leave(settings, session_id, participant_id, reason, was_publishing)


@app.task(name="media.close_session", **RETRY)
def close_session(session_id: str) -> None:
    membership.finish_close(settings, session_id)


@app.task(name="media.send_message", **RETRY)
def send_message(session_id: str, sender_id: str, payload: dict, to: str | None = None) -> None:
    membership.send_message(settings, session_id, sender_id, payload, to)


@app.task(name="media.rejoin", **RETRY)
def rejoin(session_id: str, participant_id: str, endpoint_refs: list[str], was_publishing: bool) -> None:
    membership.finish_rejoin(settings, session_id, participant_id, endpoint_refs, was_publishing)


@app.task(name="media.check_connection", **RETRY)
def check_connection(session_id: str, participant_id: str, stream: str) -> None:
    connection_watch.check_connection(settings, session_id, participant_id, stream)
