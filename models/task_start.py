"""How many times a redelivered task has started: the way to tell the task that crashes its
worker (poison) from the tasks that only happened to be fetched alongside it."""

from __future__ import annotations

import time

from mongoengine import FloatField, IntField, StringField

from models.base import Document


class TaskStart(Document):
    id = StringField(primary_key=True)  # the Celery task id
    name = StringField(default="")
    starts = IntField(default=0)
    first_at = FloatField(default=time.time)

    meta = {"collection": "task_starts", "indexes": ["first_at"]}

    @classmethod
    def count_start(cls, task_id: str, name: str) -> int:
        """Counts one more start; returns the total."""
        cls.objects(id=task_id).update_one(upsert=True, inc__starts=1, set__name=name)
        return cls.objects(id=task_id).only("starts").first().starts

    @classmethod
    def forget(cls, task_id: str) -> None:
        cls.objects(id=task_id).delete()
