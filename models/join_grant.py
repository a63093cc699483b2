"""A minted join token: single use, with a role and an expiry, one document each.

Only the token's SHA-256 is stored (its id), so the database never holds a usable token. A join
consumes the grant with one conditional update (unused and unexpired, so two joins racing on any
web processes end with one winner) before it takes its place; a join that fails after that gives
the grant back, so a full or failing session does not burn a token.

Expired grants are deleted RETENTION_S after their expiry (TTL index on MongoDB, the lifetime
sweep on the nx-27017 stand-in): until then a late join hears "expired" rather than "not valid".
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from mongoengine import DateTimeField, IntField, StringField

from models.base import Document

# Minted tokens are told from a session's shared join token by this prefix (token_urlsafe never
# writes a "."), so a join with a wrong shared token costs no lookup of grants.
MINTED_PREFIX = "jt."


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_minted(token: str) -> bool:
    return token.startswith(MINTED_PREFIX)


class JoinGrant(Document):
    id = StringField(primary_key=True)  # sha256 of the token
    session_id = StringField(required=True)
    role = StringField(required=True)
    display_name = StringField(null=True)
    metadata_json = StringField(null=True)  # as models.participant.Participant's: JSON text, or None
    # The participant's bandwidth limits (kbps; 0 = the session's), copied to it on join.
    max_video_send_bandwidth = IntField(default=0)
    min_video_send_bandwidth = IntField(default=0)
    max_video_recv_bandwidth = IntField(default=0)
    expires_at = DateTimeField(required=True)
    created_at = DateTimeField(default=lambda: datetime.now(UTC))
    used_by = StringField(null=True)  # the participant that joined with it
    used_at = DateTimeField(null=True)

    meta = {"collection": "join_grants", "indexes": ["session_id"]}

    @classmethod
    def mint(
        cls,
        session_id: str,
        role: str,
        display_name: str | None,
        metadata: dict[str, Any] | None,
        ttl_s: int,
        now: datetime | None = None,
        **bandwidth: int,
    ) -> tuple[str, JoinGrant]:
        """A new token (returned once, never stored) and its grant; `bandwidth`: BANDWIDTH_FIELDS given (kbps)."""
        token = MINTED_PREFIX + secrets.token_urlsafe(24)
        now = now or datetime.now(UTC)
        grant = cls(
            id=digest(token),
            session_id=session_id,
            role=role,
            display_name=display_name,
            metadata_json=None if metadata is None else json.dumps(metadata, separators=(",", ":")),
            expires_at=now + timedelta(seconds=ttl_s),
            created_at=now,
            **bandwidth,
        )
        grant.save(force_insert=True)
        return token, grant

    @property
    def metadata(self) -> dict[str, Any] | None:
        return None if self.metadata_json is None else dict(json.loads(self.metadata_json))

    @classmethod
    def consume(cls, session_id: str, token: str, participant_id: str, now: datetime | None = None) -> JoinGrant | None:
        """Marks the grant used by `participant_id` if it is this session's, unused and unexpired:
        one atomic update, so of racing joins exactly one gets it. None otherwise (`explain` says why)."""
        now = now or datetime.now(UTC)
        return cls.objects(id=digest(token), session_id=session_id, used_by=None, expires_at__gt=now).modify(
            new=True, set__used_by=participant_id, set__used_at=now
        )

    @classmethod
    def give_back(cls, token: str, participant_id: str) -> None:
        """The join that consumed it failed: usable again (only if that join still holds it)."""
        cls.objects(id=digest(token), used_by=participant_id).update_one(set__used_by=None, set__used_at=None)

    @classmethod
    def find_for(cls, session_id: str, token: str) -> JoinGrant | None:
        return cls.objects(id=digest(token), session_id=session_id).first()

    @classmethod
    def purge_expired_before(cls, before: datetime) -> int:
        """Deletes grants that expired before `before` (what their TTL index does on MongoDB)."""
        return cls.objects(expires_at__lt=before).delete()
