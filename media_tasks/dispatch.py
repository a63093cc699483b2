"""The only way to enqueue work for the workers: one typed method per task.

The task names live here (TaskName) and nowhere else; media_tasks.tasks registers one function
per name, and a unit test holds each method's parameters equal to its task function's. This
module imports no task code, so the web tier sends without loading the media side, and worker
code may enqueue (a countdown check, say) without an import cycle. Tasks are routed by session
(media_tasks.routing) and never show SDP or tokens in Flower: arguments named in `hidden` are
shown as `<hidden>`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from celery import Celery

from celeryconfig import celery_config
from messaging import webhook_events
from settings import Settings


class TaskName(StrEnum):
    """What a task runs under, and what Flower shows."""

    CREATE_SESSION = "media.create_session"
    ANNOUNCE_JOIN = "media.announce_join"
    PROCESS_OFFER = "media.process_offer"
    ADD_CANDIDATES = "media.add_candidates"
    FINISH_LEAVE = "media.finish_leave"
    CLOSE_SESSION = "media.close_session"
    SEND_MESSAGE = "media.send_message"
    REJOIN = "media.rejoin"
    CHECK_CONNECTION = "media.check_connection"
    UNPUBLISH = "media.unpublish"
    MUTE = "media.mute"
    START_RECORDING = "media.start_recording"
    STOP_RECORDING = "media.stop_recording"
    DELIVER_WEBHOOK = "media.deliver_webhook"  # to its own queue (media_tasks.routing.webhook_queue)


NextRootId = Callable[[], str | None]
"""Gives the root id of the next task enqueued (messaging.rerun_identity), None for Celery's own."""


def _no_root() -> str | None:
    return None


class TaskQueue:
    def __init__(self, celery: Celery, next_root_id: NextRootId = _no_root) -> None:
        self.celery = celery
        self.next_root_id = next_root_id
        # With the connection timeout and one retry (celeryconfig), a send gives up within about
        # 4 x this; the web answers 503.
        self.confirm_timeout = float(celery.conf.broker_connection_timeout or 0) or None

    def create_session(self, session_id: str) -> None:
        self._send(TaskName.CREATE_SESSION, {"session_id": session_id})

    def announce_join(
        self,
        session_id: str,
        participant_id: str,
        display_name: str,
        role: str = "publisher",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "display_name": display_name}
        self._send(TaskName.ANNOUNCE_JOIN, {**arguments, "role": role, "metadata": metadata or {}})

    def process_offer(self, session_id: str, participant_id: str, stream: str, sdp: str, request_id: str) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "stream": stream, "sdp": sdp}
        self._send(TaskName.PROCESS_OFFER, {**arguments, "request_id": request_id}, hidden=("sdp",))

    def add_candidates(
        self, session_id: str, participant_id: str, stream: str, candidates: list[dict[str, Any]]
    ) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "stream": stream}
        self._send(TaskName.ADD_CANDIDATES, {**arguments, "candidates": candidates})

    def finish_leave(self, session_id: str, participant_id: str, reason: str, was_publishing: bool) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "reason": reason}
        self._send(TaskName.FINISH_LEAVE, {**arguments, "was_publishing": was_publishing})

    def close_session(self, session_id: str, reason: str = "closed") -> None:
        self._send(TaskName.CLOSE_SESSION, {"session_id": session_id, "reason": reason})

    def send_message(self, session_id: str, sender_id: str, payload: dict[str, Any], to: str | None) -> None:
        self._send(
            TaskName.SEND_MESSAGE, {"session_id": session_id, "sender_id": sender_id, "payload": payload, "to": to}
        )

    def rejoin(
        self,
        session_id: str,
        participant_id: str,
        endpoint_refs: list[str],
        was_publishing: bool,
        publications: list[str] | None = None,
    ) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "endpoint_refs": endpoint_refs}
        self._send(TaskName.REJOIN, {**arguments, "was_publishing": was_publishing, "publications": publications})

    def check_connection(self, session_id: str, participant_id: str, stream: str, *, delay_s: float) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "stream": stream}
        self._send(TaskName.CHECK_CONNECTION, arguments, countdown=delay_s)

    def unpublish(self, session_id: str, participant_id: str, name: str, reason: str) -> None:
        arguments = {"session_id": session_id, "participant_id": participant_id, "name": name}
        self._send(TaskName.UNPUBLISH, {**arguments, "reason": reason})

    def mute(self, session_id: str, participant_id: str, name: str) -> None:
        self._send(TaskName.MUTE, {"session_id": session_id, "participant_id": participant_id, "name": name})

    def start_recording(self, session_id: str, recording_id: str) -> None:
        self._send(TaskName.START_RECORDING, {"session_id": session_id, "recording_id": recording_id})

    def stop_recording(self, session_id: str, recording_id: str, reason: str) -> None:
        arguments = {"session_id": session_id, "recording_id": recording_id, "reason": reason}
        self._send(TaskName.STOP_RECORDING, arguments)

    def deliver_webhook(self, url: str, event_id: str, body: str, emitted_at: float) -> None:
        arguments = {"url": url, "event_id": event_id, "body": body, "emitted_at": emitted_at}
        self._send(TaskName.DELIVER_WEBHOOK, arguments, hidden=("body",))

    def _send(
        self, name: TaskName, kwargs: dict[str, Any], hidden: tuple[str, ...] = (), countdown: float | None = None
    ) -> None:
        shown = {key: ("<hidden>" if key in hidden else value) for key, value in kwargs.items()}
        # The producer is ours to release: on a failure Celery's own would have its connection
        # closed by the pool with a close handshake, which has no timeout, and a broker that
        # blocks publishers (memory or disk alarm) or went silent never answers it.
        producer = self.celery.producer_pool.acquire(block=True)
        try:
            self.celery.send_task(
                str(name),
                kwargs=kwargs,
                kwargsrepr=repr(shown),
                argsrepr="()",
                countdown=countdown,
                # enqueued_at: workers measure the dispatch delay (signaling_task_dispatch_seconds) from
                # it, which spares every request a confirmed `task-sent` event on the broker.
                headers={"enqueued_at": time.time()},
                root_id=self.next_root_id(),
                confirm_timeout=self.confirm_timeout,
                producer=producer,
            )
        except BaseException:
            # Dropped without a word; the pool reconnects it on its next use.
            producer.__connection__.collect()
            raise
        finally:
            producer.release()


def sending_app(settings: Settings) -> Celery:
    """A Celery app that only sends (no tasks registered): what the web tier needs."""
    app = Celery("media_tasks", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


_queues: dict[Settings, TaskQueue] = {}
_queues_lock = threading.Lock()


def task_queue(settings: Settings) -> TaskQueue:
    """The process's TaskQueue for these settings, for worker-side code (no Idempotency-Key there):
    the worker's own app once `use_app` registered it, else one made for sending."""
    with _queues_lock:
        if settings not in _queues:
            _queues[settings] = TaskQueue(sending_app(settings))
        return _queues[settings]


def use_app(settings: Settings, celery: Celery) -> None:
    with _queues_lock:
        _queues[settings] = TaskQueue(celery)


# Webhook events (emitted through messaging.publisher, below this layer) are queued from here.
webhook_events.use_queue(task_queue)
