"""The web tier's way to enqueue work: this app's media_tasks.dispatch.TaskQueue."""

from __future__ import annotations

from flask import current_app

from media_tasks.dispatch import TaskQueue


def task_queue() -> TaskQueue:
    queue: TaskQueue = current_app.extensions["signaling_tasks"]
    return queue
