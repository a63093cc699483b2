"""Celery tasks: thin wrappers that unpack ids and call one domain function.

Each takes the running task first (its `settings` are the worker's) and `session_id` next,
which the router hashes onto a shard queue. `media_tasks.celery_app` registers every function
of TASKS under its name; `media_tasks.dispatch` (where the names live) is the only way to
enqueue them. The retry policy is the base class's (media_tasks.base_task.MediaTask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from media_tasks import connection_watch, negotiation, publications, recordings, routing, session_lifecycle, webhooks
from media_tasks.base_task import MediaTask
from media_tasks.dispatch import TaskName
from media_tasks.kms_events import schedule_connection_check
from media_tasks.kms_pool import SessionGone


def create_session(task: MediaTask, session_id: str) -> None:
    session_lifecycle.prepare_session(task.settings, session_id)


def announce_join(
    task: MediaTask,
    session_id: str,
    participant_id: str,
    display_name: str,
    role: str = "publisher",  # defaults: a task enqueued before roles existed
    metadata: dict[str, Any] | None = None,
) -> None:
    try:
        session_lifecycle.announce_join(task.settings, session_id, participant_id, display_name, role, metadata)
    except SessionGone:
        pass


def process_offer(
    task: MediaTask, session_id: str, participant_id: str, stream: str, sdp: str, request_id: str
) -> None:
    try:
        negotiation.process_offer(task.settings, session_id, participant_id, stream, sdp, request_id)
    except SessionGone:
        pass


def add_candidates(
    task: MediaTask, session_id: str, participant_id: str, stream: str, candidates: list[dict[str, Any]]
) -> None:
    negotiation.add_candidates(task.settings, session_id, participant_id, stream, candidates)


def finish_leave(task: MediaTask, session_id: str, participant_id: str, reason: str, was_publishing: bool) -> None:
    session_lifecycle.finish_leave(task.settings, session_id, participant_id, reason, was_publishing)


def close_session(task: MediaTask, session_id: str, reason: str = "closed") -> None:
    session_lifecycle.finish_close(task.settings, session_id, reason)


def send_message(task: MediaTask, session_id: str, sender_id: str, payload: dict[str, Any], to: str | None) -> None:
    session_lifecycle.send_message(task.settings, session_id, sender_id, payload, to)


def rejoin(
    task: MediaTask,
    session_id: str,
    participant_id: str,
    endpoint_refs: list[str],
    was_publishing: bool,
    publications: list[str] | None = None,
) -> None:
    session_lifecycle.finish_rejoin(
        task.settings, session_id, participant_id, endpoint_refs, was_publishing, publications or []
    )


def check_connection(task: MediaTask, session_id: str, participant_id: str, stream: str) -> None:
    connection_watch.check_connection(
        task.settings,
        session_id,
        participant_id,
        stream,
        schedule_connection_check(task.settings, session_id, participant_id, stream),
    )


def unpublish(task: MediaTask, session_id: str, participant_id: str, name: str, reason: str) -> None:
    publications.unpublish(task.settings, session_id, participant_id, name, reason)


def mute(task: MediaTask, session_id: str, participant_id: str, name: str) -> None:
    publications.apply_mute(task.settings, session_id, participant_id, name)


def start_recording(task: MediaTask, session_id: str, recording_id: str) -> None:
    recordings.start(task.settings, session_id, recording_id)


def stop_recording(task: MediaTask, session_id: str, recording_id: str, reason: str) -> None:
    recordings.stop(task.settings, session_id, recording_id, reason)


def deliver_webhook(task: MediaTask, url: str, event_id: str, body: str, emitted_at: float) -> None:
    """Runs in the webhook worker only (its queue is routing.webhook_queue)."""
    retries = task.request.retries or 0
    delay = webhooks.deliver(task.settings, url, event_id, body, emitted_at, retries)
    if delay is not None:
        # A countdown on a quorum queue's topic exchange: Celery's native delayed delivery keeps it
        # on the broker. The window, not a count, ends the retries (webhooks.deliver).
        queue = routing.webhook_queue(task.settings)
        raise task.retry(countdown=delay, max_retries=retries + 1, queue=queue)


TASKS: dict[TaskName, Callable[..., None]] = {
    TaskName.CREATE_SESSION: create_session,
    TaskName.ANNOUNCE_JOIN: announce_join,
    TaskName.PROCESS_OFFER: process_offer,
    TaskName.ADD_CANDIDATES: add_candidates,
    TaskName.FINISH_LEAVE: finish_leave,
    TaskName.CLOSE_SESSION: close_session,
    TaskName.SEND_MESSAGE: send_message,
    TaskName.REJOIN: rejoin,
    TaskName.CHECK_CONNECTION: check_connection,
    TaskName.UNPUBLISH: unpublish,
    TaskName.MUTE: mute,
    TaskName.START_RECORDING: start_recording,
    TaskName.STOP_RECORDING: stop_recording,
    TaskName.DELIVER_WEBHOOK: deliver_webhook,
}
