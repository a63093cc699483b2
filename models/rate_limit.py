"""Limits shared by every web instance: per-caller request rate and concurrent polls.

RateBucket is a token bucket in its GCRA form: one document per caller holds the bucket's
"theoretical arrival time" (tat). A request is allowed when, after adding one interval (1/rate)
to max(tat, now), tat is at most `burst` intervals ahead of now. Both ways of taking a token
are single conditional atomic updates (`$set` when the bucket is full, `$inc` when it is
not), so web instances never read-modify-write and never grant more than the bucket holds.
A refused request changes nothing, so tat only moves forward and a refusal's Retry-After is
exact.

PollSlot holds one of a participant's `max` poll slots as a short lease: a web instance that
dies in the middle of a poll leaves a slot that frees itself when its lease runs out, rather
than a counter that stays incremented forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from mongoengine import FloatField, NotUniqueError, StringField

from models.base import Document

# Buckets idle this long are full again and slots this far past their lease are dead: both are
# deleted by the periodic sweep (nx-27017 does not apply TTL indexes, so no TTL index is used).
STALE_S = 60.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0


class RateBucket(Document):
    id = StringField(primary_key=True)
    tat = FloatField(required=True)

    meta = {"collection": "rate_buckets", "indexes": ["tat"]}

    @classmethod
    def take(cls, key: str, now: float, per_s: float, burst: int, count: int = 1) -> RateDecision:
        """Takes `count` tokens at once, or none."""
        interval = 1.0 / per_s
        cost = count * interval
        ahead = max(burst, 1) * interval  # how far tat may run ahead of now after taking tokens
        for _attempt in range(5):
            # Full bucket (idle caller): start again from now.
            if cls.objects(id=key, tat__lte=now).update_one(set__tat=now + cost):
                return RateDecision(True)
            # Tokens left: `count` more intervals. The bound keeps tat within `ahead` of now.
            if cls.objects(id=key, tat__gt=now, tat__lte=now + ahead - cost).update_one(inc__tat=cost):
                return RateDecision(True)
            current = cls.objects(id=key).only("tat").first()
            if current is None:
                try:
                    cls(id=key, tat=now + cost).save(force_insert=True)
                    return RateDecision(True)
                except NotUniqueError:
                    continue  # another instance created it first: take from it
            elif current.tat > now + ahead - cost:
                return RateDecision(False, current.tat + cost - ahead - now)
            # Otherwise tat moved between our updates and our read: try again.
        return RateDecision(False, interval)

    @classmethod
    def sweep(cls, now: float) -> int:
        return cls.objects(tat__lt=now - STALE_S).delete()


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
