"""The bound on the threads one media server's tasks hold in a worker process (media_tasks.kms_load)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from media_tasks import kms_load
from media_tasks.kms_load import MediaServerBusy
from settings import Settings

SLOW, FAST = "ws://slow:8888/kurento", "ws://fast:8888/kurento"
TWO = Settings(kms_urls=(SLOW, FAST), worker_concurrency=4, kms_thread_share=0.75)


def test_the_share_is_rounded_down_and_leaves_one_thread_to_the_others():
    assert kms_load.limit(TWO) == 3
    assert kms_load.limit(replace(TWO, worker_concurrency=8)) == 6
    assert kms_load.limit(replace(TWO, kms_thread_share=0.1)) == 1  # never 0: that would mean no bound
    assert kms_load.limit(replace(TWO, kms_thread_share=0.99)) == 3
    assert kms_load.limit(replace(TWO, kms_thread_share=1.0)) == 0  # no bound
    assert kms_load.limit(replace(TWO, worker_concurrency=1)) == 0


def hold(settings: Settings, url: str, entered: threading.Event, release: threading.Event) -> None:
    with kms_load.task_scope(deferrable=True):
        kms_load.enter(settings, url)
        entered.set()
        release.wait(10)


def running_tasks(settings: Settings, url: str, count: int) -> tuple[list[threading.Thread], threading.Event]:
    release = threading.Event()
    threads = []
    for _ in range(count):
        entered = threading.Event()
        thread = threading.Thread(target=hold, args=(settings, url, entered, release))
        thread.start()
        assert entered.wait(10)
        threads.append(thread)
    return threads, release


def finish(threads: list[threading.Thread], release: threading.Event) -> None:
    release.set()
    for thread in threads:
        thread.join(10)


def test_a_server_holding_its_share_gets_its_next_task_deferred_and_the_others_do_not():
    threads, release = running_tasks(TWO, SLOW, 3)
    try:
        with kms_load.task_scope(deferrable=True), pytest.raises(MediaServerBusy):
            kms_load.enter(TWO, SLOW)
        with kms_load.task_scope(deferrable=True):
            kms_load.enter(TWO, FAST)
            kms_load.enter(TWO, FAST)  # the same task again: counted once
        with kms_load.task_scope(deferrable=False):  # deferred for too long: it waits its turn
            kms_load.enter(TWO, SLOW)
    finally:
        finish(threads, release)
    # Every task's share was given back when it ended, the one that raised included.
    threads, release = running_tasks(TWO, SLOW, 3)
    finish(threads, release)


def test_with_one_media_server_nothing_is_deferred():
    alone = replace(TWO, kms_urls=(SLOW,))
    threads, release = running_tasks(alone, SLOW, 4)
    finish(threads, release)


def test_outside_a_task_nothing_is_counted():
    threads, release = running_tasks(TWO, SLOW, 3)
    try:
        kms_load.enter(TWO, SLOW)  # the background loop, a test: no scope, no bound
    finally:
        finish(threads, release)


def test_deferrals_back_off_to_a_few_seconds():
    assert [kms_load.defer_for(n) for n in range(5)] == [1, 2, 4, 4, 4]
    assert kms_load.defer_for(10_000) == kms_load.DEFER_MAX_S
