"""The Celery application factory: one app per Settings, for the workers (to run) and the web
tier (to send, through media_tasks.dispatch)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init, worker_ready

from celeryconfig import celery_config
from media_tasks import dispatch
from media_tasks.base_task import MediaTask
from media_tasks.routing import dead_letter_queue
from media_tasks.tasks import TASKS
from models import connect_db
from settings import Settings


class MediaCelery(Celery):
    """A Celery app that carries the Settings it was built from, for its tasks."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("media_tasks", task_cls=MediaTask)
        self.settings = settings


def create_celery_app(settings: Settings) -> MediaCelery:
    app = MediaCelery(settings)
    app.conf.update(celery_config(settings))
    for name, function in TASKS.items():
        app.task(name=str(name), bind=True)(function)
    return app


def run_as_worker(app: MediaCelery) -> None:
    """What a worker process (and Flower) adds to the app: its database, logs, metrics and the
    background loop. Celery's signals are process-wide; a process runs one such app."""
    settings = app.settings
    connect_db(settings)
    # Celery logs "Task ... received" and "Task ... succeeded" at INFO for every task: one line
    # per task is enough unless asked (the level is read when the worker builds its strategies).
    received_level = logging.INFO if settings.log_task_received else logging.WARNING
    logging.getLogger("celery.worker.strategy").setLevel(received_level)
    dispatch.use_app(settings, app)  # worker code enqueues through the worker's own app

    wire_worker_process(settings)

    @worker_ready.connect(weak=False)
    def _on_worker_ready(sender: Any = None, **_kwargs: Any) -> None:
        from media_tasks.background import BackgroundLoop
        from observability import task_metrics

        task_metrics.start(settings.worker_metrics_port)
        # Nobody consumes it, so no worker would declare it; without it poison tasks would vanish.
        with app.connection_for_write() as conn:
            dead_letter_queue(settings)(conn.default_channel).declare()
        BackgroundLoop(settings).start()


def wire_worker_process(settings: Settings) -> None:
    """What every worker process needs, signaling or webhook: its database after a fork, JSON logs."""

    @worker_process_init.connect(weak=False)
    def _connect_after_fork(**_kwargs: Any) -> None:
        connect_db(settings)

    @after_setup_logger.connect(weak=False)
    @after_setup_task_logger.connect(weak=False)
    def _json_logs(logger: logging.Logger | None = None, **_kwargs: Any) -> None:
        if settings.log_format == "json" and logger is not None:
            from observability.logs import use_json_logs

            use_json_logs(logger, logger.level or logging.INFO)
