"""Per-participant outbox: messages taken from the participant's queue, numbered by seq.

A long poll moves messages from RabbitMQ into here before acking them there. So a poll
response lost in transit is answered again by the next poll, on any web instance. Entries up
to the participant's `acked_seq` (the `after` of its polls) are never served again; their
bodies are blanked in batches (`trim`) and the entries purged later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypedDict

from mongoengine import FloatField, IntField, StringField
from pymongo.errors import BulkWriteError

from models.base import Document

DUPLICATE_KEY = 11000


@dataclass
class StoredBatch:
    """What `OutboxMessage.store_many` stored: (seq, body) in order, and whether it met a taken seq."""

    stored: list[tuple[int, str]] = field(default_factory=list)
    seq_taken: bool = False


class _OutboxDocument(TypedDict):
    """An entry as `store_many` inserts it, bypassing MongoEngine."""

    participant_id: str
    seq: int
    message_id: str
    body: str
    acked_at: float


class OutboxMessage(Document):
    participant_id = StringField(required=True)
    seq = IntField(required=True)
    message_id = StringField(required=True)
    body = StringField(required=True)
    # Set when the client acknowledged it; the entry then stays, without its body, so that a
    # redelivery of the same message (a web instance died before its ack reached RabbitMQ) is
    # recognised by message_id and not delivered twice.
    acked_at = FloatField(default=0.0)

    meta = {
        "collection": "outbox",
        "indexes": [
            {"fields": ["participant_id", "seq"], "unique": True},
            {"fields": ["participant_id", "message_id"], "unique": True},
            "acked_at",
        ],
    }

    @classmethod
    def store_many(cls, participant_id: str, after_seq: int, entries: list[tuple[str, str]]) -> StoredBatch:
        """Numbers (message_id, body) entries from after_seq + 1 and stores them in one ordered insert.

        One write per poll delivery however many messages it carries. A redelivered message_id
        is skipped (it keeps the seq it was first stored with) and numbering goes on after it;
        a taken seq (another poll numbered it) stops the batch.
        """
        batch = StoredBatch()
        seq = after_seq
        while entries:
            docs: list[_OutboxDocument] = [
                {
                    "participant_id": participant_id,
                    "seq": seq + 1 + i,
                    "message_id": message_id,
                    "body": body,
                    "acked_at": 0.0,
                }
                for i, (message_id, body) in enumerate(entries)
            ]
            try:
                cls._get_collection().insert_many(docs, ordered=True)
                batch.stored += [(doc["seq"], doc["body"]) for doc in docs]
                return batch
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or [{}]
                if errors[0].get("code") != DUPLICATE_KEY:
                    raise
                inserted = errors[0].get("index", exc.details.get("nInserted", 0))
                batch.stored += [(doc["seq"], doc["body"]) for doc in docs[:inserted]]
                seq += inserted
                refused_id = entries[inserted][0]
                entries = entries[inserted + 1 :]
                if not cls.objects(participant_id=participant_id, message_id=refused_id).count():
                    batch.seq_taken = True
                    return batch
        return batch

    @classmethod
    def highest_seq(cls, participant_id: str) -> int:
        last = cls.objects(participant_id=participant_id).order_by("-seq").only("seq").first()
        return 0 if last is None else last.seq

    @classmethod
    def after(cls, participant_id: str, after: int, limit: int) -> list[OutboxMessage]:
        return list(
            cls.objects(participant_id=participant_id, seq__gt=after, acked_at=0.0).order_by("seq").limit(limit)
        )

    @classmethod
    def trim(cls, participant_id: str, up_to: int, now: float | None = None) -> None:
        """Forgets the bodies the client acknowledged; their ids stay to catch redeliveries."""
        cls.objects(participant_id=participant_id, seq__lte=up_to, acked_at=0.0).update(
            set__body="", set__acked_at=time.time() if now is None else now
        )

    @classmethod
    def purge_acknowledged(cls, before: float) -> int:
        """Deletes acknowledged entries old enough that their queue message cannot come back."""
        return cls.objects(acked_at__gt=0.0, acked_at__lt=before).delete()

    @classmethod
    def purge_of(cls, participant_ids: list[str]) -> int:
        """Deletes every entry of these participants (they left RETENTION_S ago)."""
        return cls.objects(participant_id__in=participant_ids).delete()
