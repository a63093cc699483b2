"""How many times a redelivered task has started: the way to tell the task that crashes its
worker (poison) from the tasks that only happened to be fetched alongside it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from mongoengine import DateTimeField, FloatField, IntField, StringField

from models.base import Document


class TaskStart(Document):
    id = StringField(primary_key=True)  # the Celery task id
    name = StringField(default="")
    starts = IntField(default=0)
    first_at = FloatField(default=time.time)
    # The latest start, as a date: a record no start renewed for RETENTION_S belongs to a task that
    # will never finish (dead-lettered by the broker's backstop, or its queue deleted).
    started_at = DateTimeField(null=True)

    meta = {"collection": "task_starts", "indexes": ["first_at"]}

    @classmethod
    def count_start(cls, task_id: str, name: str) -> int:
        """Counts one more start; returns the total."""
        cls.objects(id=task_id).update_one(
            upsert=True, inc__starts=1, set__name=name, set__started_at=datetime.now(UTC)
        )
        return cls.objects(id=task_id).only("starts").first().starts

    @classmethod
    def forget(cls, task_id: str) -> None:
        cls.objects(id=task_id).delete()

    @classmethod
    def purge_started_before(cls, before: datetime) -> int:
        """Deletes the records of tasks last started before `before` (what the TTL index does)."""
        return cls.objects(started_at__lt=before).delete()
