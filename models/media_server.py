"""What the service knows of each Kurento media server: reachable or not, and its load."""

from __future__ import annotations

from mongoengine import BooleanField, FloatField, IntField, StringField

from models.base import Document


class MediaServer(Document):
    url = StringField(primary_key=True)
    alive = BooleanField(default=True)
    used_memory_kib = IntField(default=0)
    checked_at = FloatField(default=0.0)
    failures = IntField(default=0)

    meta = {"collection": "media_servers", "indexes": [("alive", "used_memory_kib")]}

    @classmethod
    def record_alive(cls, url: str, used_memory_kib: int, now: float) -> None:
        cls.objects(url=url).update_one(
            upsert=True, set__alive=True, set__used_memory_kib=used_memory_kib, set__checked_at=now, set__failures=0
        )

    @classmethod
    def record_failure(cls, url: str, now: float) -> bool:
        """Marks the server dead; True only for the call that saw it alive last."""
        changed = cls.objects(url=url, alive=True).update_one(set__alive=False, set__checked_at=now, inc__failures=1)
        if not changed:
            cls.objects(url=url).update_one(upsert=True, set__alive=False, set__checked_at=now, inc__failures=1)
        return bool(changed)
