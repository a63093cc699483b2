"""The Celery application shared by the web tier (to send) and the workers (to run)."""

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init, worker_ready

from media_tasks.routing import dead_letter_queue
from models import connect_db
from settings import load_settings

app = Celery("media_tasks", task_cls="media_tasks.base_task:MediaTask")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["media_tasks"], related_name="tasks", force=True)


@worker_process_init.connect
def _connect_after_fork(**_kwargs) -> None:
    connect_db(load_settings())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger=None, **_kwargs) -> None:
    if load_settings().log_format == "json":
        from observability.logs import use_json_logs

        use_json_logs(logger, logger.level or logging.INFO)


@worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs) -> None:
    from media_tasks.background import BackgroundLoop
    from observability import task_metrics

    settings = load_settings()
    task_metrics.start(settings.worker_metrics_port)
    # Nobody consumes it, so no worker would declare it; without it poison tasks would vanish.
    with app.connection_for_write() as conn:
        dead_letter_queue(settings)(conn.default_channel).declare()
    BackgroundLoop(settings).start()


connect_db(load_settings())
