"""Responses remembered under an Idempotency-Key, shared by every web instance."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from mongoengine import DateTimeField, FloatField, IntField, NotUniqueError, StringField

from models.base import Document

PENDING_TIMEOUT_S = 30.0


class IdempotencyRecord(Document):
    id = StringField(primary_key=True)
    status_code = IntField(null=True)
    body = StringField(null=True)
    created_at = FloatField(default=time.time)
    # Hash of the request body the key was first used with: the same key with another body is
    # refused rather than answered with a response to a different request.
    fingerprint = StringField(default="")
    # The claim's time as a date, for the TTL index (IDEMPOTENCY_TTL_S) and the sweep.
    stored_at = DateTimeField(default=lambda: datetime.now(UTC))

    meta = {"collection": "idempotency", "indexes": ["created_at"]}

    @classmethod
    def claim(cls, key: str, now: float | None = None, fingerprint: str = "") -> IdempotencyRecord | None:
        """Reserves the key; returns the existing record if another request has it already.

        A claim left unfinished for PENDING_TIMEOUT_S (its web instance died mid-request) is
        taken over by a retry of the same request (same fingerprint), so the client's retry is
        not refused forever.
        """
        now = time.time() if now is None else now
        for _attempt in range(5):
            try:
                cls(id=key, created_at=now, fingerprint=fingerprint, stored_at=datetime.fromtimestamp(now, UTC)).save(
                    force_insert=True
                )
                return None
            except NotUniqueError:
                existing = cls.objects(id=key).first()
                if existing is None:
                    continue  # the holder abandoned the key between our insert and our read
                if (
                    existing.status_code is None
                    and existing.created_at < now - PENDING_TIMEOUT_S
                    and cls.objects(
                        id=key, status_code=None, created_at=existing.created_at, fingerprint=fingerprint
                    ).update_one(set__created_at=now, set__stored_at=datetime.fromtimestamp(now, UTC))
                ):
                    return None
                return existing
        raise RuntimeError(f"idempotency key {key} keeps changing hands")

    @classmethod
    def complete(cls, key: str, status_code: int, body: str) -> None:
        cls.objects(id=key).update_one(set__status_code=status_code, set__body=body)

    @classmethod
    def abandon(cls, key: str) -> None:
        """Frees the key after a failure that did nothing, so the client may retry."""
        cls.objects(id=key, status_code=None).delete()

    @classmethod
    def purge_stored_before(cls, before: datetime) -> int:
        """Deletes records claimed before `before` (what the TTL index does on MongoDB)."""
        return cls.objects(stored_at__lt=before).delete()
