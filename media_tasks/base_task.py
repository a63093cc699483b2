"""The base of every task: poison tasks are dead-lettered, the tasks fetched with them are not.

A worker process holds several unacknowledged tasks (prefetch × threads). When one of them
kills the process every time, RabbitMQ redelivers all of them, and its delivery limit alone
would dead-letter the innocent ones too. So a task that arrives redelivered counts its
starts in MongoDB: only the one that keeps starting and never finishing reaches the start
limit and is rejected to the dead-letter queue; the others just run (one redelivered task at a
time per process, so that they do not die with it again). First deliveries, the normal case,
cost nothing.

A task that fails for good (an error nothing retries, its retries exhausted, or dead-lettered as
poison) and answers a client's request (its arguments carry `request_id` and `participant_id`:
offers) tells that client with an `error {request_id, code, message}`, confirmed before the task
is acknowledged or rejected; otherwise the client would wait for an answer forever.

A task whose media server holds its share of the process's threads (media_tasks.kms_load) is
deferred: published again under the same id, on the same queue, a second or more later, confirmed before
this delivery is acknowledged, its retries untouched.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from kombu.exceptions import OperationalError as KombuOperationalError
from pymongo.errors import ConnectionFailure, OperationFailure

import kurento
from media_tasks import kms_load
from media_tasks.kms_load import MediaServerBusy
from media_tasks.kms_pool import NoMediaServer
from messaging import messages
from messaging.publisher import PublishNotConfirmed, get_publisher
from messaging.rerun_identity import publishing_for_task, task_seed
from models.task_start import TaskStart
from settings import Settings

if TYPE_CHECKING:
    from media_tasks.celery_app import MediaCelery

log = logging.getLogger(__name__)

# Headers of a deferred task (media_tasks.kms_load): when it was first deferred, and how many times.
BUSY_SINCE = "kms_busy_since"
BUSY_DEFERRALS = "kms_busy_deferrals"


# Redelivered tasks run one at a time in a process. The tasks fetched together with a poison
# are fetched together again after each crash (they sit next to it in the queue); if they ran
# beside it they would die with it every time and reach the start limit too. Waiting their turn,
# they have not started when it kills the process, so only the poison's starts are counted.
_one_redelivered_at_a_time = threading.Lock()


class MediaTask(Task):
    """Every task's retry policy: failures worth another try a little later (the media server,
    broker or database away for a moment), with backoff."""

    autoretry_for = (
        kurento.KurentoUnavailable,
        NoMediaServer,
        ConnectionError,
        OSError,
        ConnectionFailure,
        KombuOperationalError,
    )
    retry_backoff = 0.5
    retry_backoff_max = 5
    retry_jitter = True

    app: MediaCelery

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    # Read by Celery at each retry: TASK_MAX_RETRIES of the worker's settings.
    def max_retries(self) -> int:
        return self.settings.task_max_retries

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            try:
                with kms_load.task_scope(self._may_defer()):
                    return self._call(args, kwargs)
            except MediaServerBusy as busy:
                deferred = self._defer(busy)
                if deferred is not None:
                    raise deferred from busy
                with kms_load.task_scope(deferrable=False):  # not deferred: it waits its turn instead
                    return self._call(args, kwargs)
        except (Retry, Ignore):
            raise  # not the end: it runs again later (or was dropped on purpose)
        except Reject as rejected:
            if not rejected.requeue:
                self._report_failure(args, kwargs, 500, f"the request was abandoned: {rejected.reason}")
            raise
        except Exception as exc:
            self._report_failure(args, kwargs, *failure_code(exc, self.autoretry_for))
            raise

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        if not redelivered:
            return self._run_and_flush(args, kwargs)
        with _one_redelivered_at_a_time:
            return self._run_redelivered(args, kwargs)

    def _may_defer(self) -> bool:
        if (self.request.delivery_info or {}).get("redelivered"):
            return False  # its start was counted (_run_redelivered): it runs now
        since = self.request.get(BUSY_SINCE)
        return since is None or time.time() - float(since) < kms_load.DEFER_WINDOW_S

    def _defer(self, busy: MediaServerBusy) -> Retry | None:
        """The task again, a little later: the same id and retries (the task ran nothing on the media
        server yet). None when it could not be published: it then runs now."""
        since = self.request.get(BUSY_SINCE) or time.time()
        deferrals = int(self.request.get(BUSY_DEFERRALS) or 0)
        countdown = kms_load.defer_for(deferrals)
        headers = {BUSY_SINCE: since, BUSY_DEFERRALS: deferrals + 1}
        signature = self.signature_from_request(self.request, countdown=countdown, headers=headers)
        try:
            signature.apply_async()
        except Exception:  # noqa: BLE001 - waiting for the busy server beats losing the task
            log.warning("task %s[%s] could not be deferred; it runs now", self.name, self.request.id, exc_info=True)
            return None
        log.info("task %s[%s] deferred %d s: %s", self.name, self.request.id, countdown, busy)
        return Retry(exc=busy, when=countdown, sig=signature)

    def _report_failure(self, args: tuple[Any, ...], kwargs: dict[str, Any], code: int, message: str) -> None:
        """Sends `error` to the client whose request this task answers, confirmed, before the ack."""
        try:
            called = inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
        except TypeError:
            return
        request_id, participant_id = called.get("request_id"), called.get("participant_id")
        session_id = called.get("session_id")
        if not (request_id and participant_id and session_id):
            return  # nobody waits for an answer to this task
        log.error("task %s[%s] failed for good: %s %s", self.name, self.request.id, code, message)
        try:
            # Under the task's message ids: a re-run that fails again sends a copy the outbox drops.
            with publishing_for_task(self._message_seed()):
                publisher = get_publisher(self.settings)
                publisher.to_participant(session_id, participant_id, messages.error(request_id, code, message))
                publisher.flush()  # inside the scope: confirms are accounted per task scope
        except Exception:  # noqa: BLE001 - the task's own failure is what propagates
            log.exception("could not tell %s that request %s failed", participant_id, request_id)

    def _run_redelivered(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # A redelivery means every earlier start ended without an ack: this is start number
        # (redeliveries counted so far) + 1.
        starts = TaskStart.count_start(self.request.id, self.name) + 1
        limit = self.settings.task_start_limit
        if starts > limit:
            log.error(
                "task %s[%s] started %d times and never finished: dead-lettering it as poison",
                self.name,
                self.request.id,
                starts - 1,
            )
            TaskStart.forget(self.request.id)
            raise Reject(f"started {starts - 1} times without finishing", requeue=False)
        result = self._run_and_flush(args, kwargs)
        TaskStart.forget(self.request.id)
        return result

    def _message_seed(self) -> str:
        return task_seed(self.request.id, self.request.root_id, self.request.parent_id)

    def _run_and_flush(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with publishing_for_task(self._message_seed()):
            result = super().__call__(*args, **kwargs)
            # The task is acknowledged after this returns: first make sure the broker has every
            # message this task published (messaging.publisher defers confirms to here and
            # accounts them per task, so this waits for exactly this task's own).
            try:
                get_publisher(self.settings).flush()
            except PublishNotConfirmed as exc:
                # A failed task is acknowledged, and its lost message with it: run it again now
                # instead (same task id, so its copies keep their message ids).
                log.warning("task %s[%s]: %s; running it again", self.name, self.request.id, exc)
                raise self.retry(exc=exc, countdown=0) from exc
        return result


def failure_code(exc: BaseException, retried: tuple[type[BaseException], ...]) -> tuple[int, str]:
    """The `error` code and message a client gets for a task that failed for good with `exc`."""
    if isinstance(exc, retried):
        return 503, f"a service the request needs stayed unavailable through every retry: {exc}"
    if isinstance(exc, kurento.KurentoError):
        return 502, f"the media server failed: {exc}"
    if isinstance(exc, OperationFailure):
        return 500, f"a database operation failed (code {exc.code})"
    return 500, "internal error"
