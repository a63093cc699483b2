"""The one limit shared by every web instance: concurrent polls of a participant.

PollSlot holds one of a participant's `max` poll slots as a short lease: a web instance that
dies in the middle of a poll leaves a slot that frees itself when its lease runs out, rather
than a counter that stays incremented forever. (Request rates are limited per web process, in
memory: signaling_web.ratelimit.)
"""

from __future__ import annotations

from mongoengine import FloatField, NotUniqueError, StringField

from models.base import Document

# Slots this far past their lease are dead: deleted by the periodic sweep (nx-27017 does not
# apply TTL indexes, so no TTL index is used).
STALE_S = 60.0


class PollSlot(Document):
    id = StringField(primary_key=True)  # "<participant_id>#<slot>"
    owner = StringField(required=True)
    until = FloatField(required=True)

    meta = {"collection": "poll_slots", "indexes": ["until"]}

    @classmethod
    def acquire(cls, participant_id: str, slots: int, owner: str, now: float, until: float) -> str | None:
        """The id of the slot now held by `owner`, or None when all `slots` are held."""
        for index in range(slots):
            slot_id = f"{participant_id}#{index}"
            try:
                cls(id=slot_id, owner=owner, until=until).save(force_insert=True)
                return slot_id
            except NotUniqueError:
                pass
            # A slot whose holder died (lease ran out) is taken over.
            if cls.objects(id=slot_id, until__lt=now).update_one(set__owner=owner, set__until=until):
                return slot_id
        return None

    @classmethod
    def release(cls, slot_id: str, owner: str) -> None:
        cls.objects(id=slot_id, owner=owner).delete()

    @classmethod
    def sweep(cls, now: float) -> int:
        return cls.objects(until__lt=now - STALE_S).delete()
