"""The Kurento sessions workers hold: KMS routes a session's events to its last connection.

Each worker process's client has its own KMS session, and the events of every endpoint it
subscribed arrive there. Workers heartbeat the sessions they hold; when one stops (the
worker died), another worker claims the session and reconnects to it with
`connect {sessionId}`, so candidates and state events keep reaching participants.
"""

from __future__ import annotations

from mongoengine import FloatField, StringField

from models.base import Document


class KmsSession(Document):
    id = StringField(primary_key=True)  # the KMS sessionId
    kms_url = StringField(required=True)
    owner = StringField(required=True)
    heartbeat_at = FloatField(default=0.0)

    meta = {"collection": "kms_sessions", "indexes": ["heartbeat_at", "owner"]}

    @classmethod
    def register(cls, session_id: str, kms_url: str, owner: str, now: float) -> None:
        cls.objects(id=session_id).update_one(
            upsert=True, set__kms_url=kms_url, set__owner=owner, set__heartbeat_at=now
        )

    @classmethod
    def heartbeat(cls, owner: str, now: float) -> int:
        """Renews every session `owner` holds; returns how many it holds."""
        return cls.objects(owner=owner).update(set__heartbeat_at=now)

    @classmethod
    def held_by(cls, owner: str) -> set[str]:
        return set(cls.objects(owner=owner).scalar("id"))

    @classmethod
    def stale(cls, older_than: float) -> list[KmsSession]:
        return list(cls.objects(heartbeat_at__lt=older_than))

    @classmethod
    def claim(cls, session_id: str, previous_heartbeat: float, owner: str, now: float) -> bool:
        """True for the one worker that takes over this session."""
        return bool(
            cls.objects(id=session_id, heartbeat_at=previous_heartbeat).update_one(
                set__owner=owner, set__heartbeat_at=now
            )
        )

    @classmethod
    def forget(cls, session_id: str) -> None:
        cls.objects(id=session_id).delete()
