"""The base of every task: poison tasks are dead-lettered, the tasks fetched with them are not.

A worker process holds several unacknowledged tasks (prefetch × threads). When one of them
kills the process every time, RabbitMQ redelivers all of them, and its delivery limit alone
would dead-letter the innocent ones too. So a task that arrives redelivered counts its
starts in MongoDB: only the one that keeps starting and never finishing reaches the start
limit and is rejected to the dead-letter queue; the others just run (one redelivered task at a
time per process, so that they do not die with it again). First deliveries, the normal case,
cost nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError as KombuOperationalError
from pymongo.errors import ConnectionFailure

import kurento
from media_tasks.kms_pool import NoMediaServer
from messaging.publisher import PublishNotConfirmed, get_publisher
from messaging.rerun_identity import publishing_for_task, task_seed
from models.task_start import TaskStart
from settings import Settings

if TYPE_CHECKING:
    from media_tasks.celery_app import MediaCelery

log = logging.getLogger(__name__)


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
    max_retries = 5
    retry_jitter = True

    app: MediaCelery

    @property
    def settings(self) -> Settings:
        return self.app.settings

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        if not redelivered:
            return self._run_and_flush(args, kwargs)
        with _one_redelivered_at_a_time:
            return self._run_redelivered(args, kwargs)

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
