"""The worker's consumer: the prefetch share per queue, and which connection goes unconfirmed."""

from __future__ import annotations

import re
from pathlib import Path

import celery
from kombu.utils.imports import symbol_by_name

from celeryconfig import celery_config
from media_tasks.worker_consumer import MediaConsumer, prefetch_share
from settings import Settings


def test_each_queue_gets_its_share_of_the_prefetch_rounded_up():
    assert prefetch_share(8, 8) == 1
    assert prefetch_share(8, 4) == 2
    assert prefetch_share(2, 4) == 1  # never 0: that would mean no limit
    assert prefetch_share(9, 8) == 2
    assert prefetch_share(8, 1) == 8
    assert prefetch_share(0, 8) == 0  # no limit stays no limit


def test_the_workers_use_the_media_consumer():
    assert symbol_by_name(celery_config(Settings())["worker_consumer"]) is MediaConsumer


def test_only_the_event_dispatcher_writes_through_the_consumers_unconfirmed_connection():
    # MediaConsumer.connection_for_write turns confirms off: if a Celery upgrade made anything but
    # task events publish through it, that would lose its confirms too.
    worker = Path(celery.__file__).parent / "worker"
    users = {
        str(path.relative_to(worker))
        for path in worker.rglob("*.py")
        if re.search(r"\b(c|consumer|self)\.connection_for_write\(", path.read_text())
    }
    assert users == {"consumer/events.py"}
