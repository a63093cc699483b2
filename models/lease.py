"""Named leases: "exactly one of all workers does this job now" (the KMS health monitor)."""

from __future__ import annotations

from mongoengine import FloatField, NotUniqueError, StringField

from models.base import Document


class Lease(Document):
    id = StringField(primary_key=True)
    owner = StringField(default="")
    until = FloatField(default=0.0)

    meta = {"collection": "leases"}

    @classmethod
    def hold(cls, name: str, owner: str, now: float, until: float) -> bool:
        """Takes or renews the lease; True while `owner` holds it."""
        try:
            cls(id=name, owner=owner, until=until).save(force_insert=True)
            return True
        except NotUniqueError:
            pass
        taken = cls.objects(id=name, until__lt=now).update_one(set__owner=owner, set__until=until)
        renewed = taken or cls.objects(id=name, owner=owner).update_one(set__until=until)
        return bool(renewed)
