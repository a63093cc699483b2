"""A participant of a session; one document each, so no nested arrays to update."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mongoengine import BooleanField, DateTimeField, FloatField, IntField, ListField, StringField
from mongoengine.queryset import QuerySet

from models import clock
from models.base import Document


class ParticipantState(StrEnum):
    JOINED = "joined"
    LEFT = "left"


class ParticipantRole(StrEnum):
    """What a participant may do: `publisher` (the default) sends and receives, `subscriber` only
    receives, `moderator` publishes and may remove others or close the session. Fixed at the join
    (its token carries it: signaling_web.auth)."""

    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"
    MODERATOR = "moderator"


class Participant(Document):
    id = StringField(primary_key=True, default=lambda: uuid.uuid4().hex)
    session_id = StringField(required=True)
    display_name = StringField(required=True, max_length=64)
    # A participant stored before roles existed reads as a publisher, which is what it was.
    role = StringField(default=ParticipantRole.PUBLISHER, choices=[r.value for r in ParticipantRole])
    # The application's own data about the participant (a JSON object, at most 4 KiB), shown to
    # everyone; stored as its JSON text, so that no key of the application's ("$x", "a.b") is
    # ever a MongoDB field name.
    metadata_json = StringField(default="{}")
    # Bandwidth of this participant's endpoints from its minted token (kbps; 0 = the session's), issue 15.
    max_video_send_bandwidth = IntField(default=0)
    min_video_send_bandwidth = IntField(default=0)
    max_video_recv_bandwidth = IntField(default=0)
    state = StringField(default=ParticipantState.JOINED, choices=[s.value for s in ParticipantState])
    left_reason = StringField(null=True)
    publishing = BooleanField(default=False)
    # Outbox numbering: the highest seq stored in the outbox, written when the poll lease is released.
    last_seq = IntField(default=0)
    # The highest seq the client acknowledged with `after`; the outbox serves only what follows.
    acked_seq = IntField(default=0)
    # Up to where the outbox bodies were blanked (models.outbox.OutboxMessage.trim), done in batches.
    trimmed_seq = IntField(default=0)
    # Lease that lets exactly one long poll at a time move messages into the outbox. Each web
    # instance renews the leases its waiting polls hold in one write (messaging.mailbox);
    # poll_instance says which instance holds it, for operators.
    # Messages the participant's queue dropped on overflow (counted by messaging.overflow), and how
    # many of them the client was told of with `messagesDropped` (written when a poll releases its lease).
    dropped_count = IntField(default=0)
    dropped_reported = IntField(default=0)
    poll_owner = StringField(null=True)
    poll_instance = StringField(null=True)
    poll_lease_until = FloatField(default=0.0)
    last_seen_at = FloatField(default=clock.now)  # judged by the leader: the database's clock
    joined_at = DateTimeField(default=lambda: datetime.now(UTC))
    # Announcements already broadcast ("joined", "left"), so a redelivered task does not repeat them.
    announced = ListField(StringField(), default=list)
    # When it left: it and its outbox are deleted RETENTION_S later (media_tasks.lifetimes).
    left_at = DateTimeField(null=True)

    meta = {"collection": "participants", "indexes": [("session_id", "state"), "last_seen_at"]}

    # Not stored. Set by acquire_poll_lease: the lease it took was never released (its holder died,
    # or its release failed), so the outbox may hold entries beyond last_seq.
    lease_lapsed: bool = False

    @property
    def metadata(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.metadata_json or "{}")
        return loaded

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        self.metadata_json = json.dumps(value or {}, separators=(",", ":"))

    @property
    def is_active(self) -> bool:
        return self.state == ParticipantState.JOINED

    def admit(self) -> None:
        """Stores this new participant as joined; its place is reserved already (Session.reserve_slot).

        An instance method: its id exists before the insert, so a caller whose insert may or may
        not have happened can still `discard` it.
        """
        self.save(force_insert=True)

    @classmethod
    def bandwidth_of(cls, participant_id: str) -> dict[str, int]:
        """The participant's own non-zero bandwidth limits ({field: kbps}, its token's): one projected read."""
        from models.session import BANDWIDTH_FIELDS

        found = cls._get_collection().find_one({"_id": participant_id}, dict.fromkeys(BANDWIDTH_FIELDS, 1))
        return {field: int(found[field]) for field in BANDWIDTH_FIELDS if found and found.get(field)}

    @classmethod
    def discard(cls, participant_id: str) -> None:
        """Deletes a participant whose join failed half-way, so nobody ever sees it."""
        cls.objects(id=participant_id).delete()

    @classmethod
    def find_in(cls, session_id: str, participant_id: str) -> Participant | None:
        """The participant, joined or left, only if it belongs to `session_id`."""
        return cls.objects(id=participant_id, session_id=session_id).first()

    @classmethod
    def is_joined(cls, session_id: str, participant_id: str) -> bool:
        return bool(cls.objects(id=participant_id, session_id=session_id, state=ParticipantState.JOINED).count())

    @classmethod
    def active_in(cls, session_id: str) -> QuerySet:
        return cls.objects(session_id=session_id, state=ParticipantState.JOINED).order_by("joined_at")

    @classmethod
    def mark_left(cls, participant_id: str, reason: str) -> Participant | None:
        """The participant as it was before this call made it leave; None if it had already left."""
        return cls.objects(id=participant_id, state=ParticipantState.JOINED).modify(
            set__state=ParticipantState.LEFT, set__left_reason=reason, set__left_at=datetime.now(UTC)
        )

    @classmethod
    def mark_all_left(cls, session_id: str, reason: str) -> int:
        """Makes every joined participant of the session leave (it is closing); returns how many."""
        return cls.objects(session_id=session_id, state=ParticipantState.JOINED).update(
            set__state=ParticipantState.LEFT, set__left_reason=reason, set__left_at=datetime.now(UTC)
        )

    @classmethod
    def left_before(cls, before: datetime, limit: int = 500) -> list[str]:
        """Ids of participants that left before `before` (joined ones have no left_at)."""
        return [p.id for p in cls.objects(state=ParticipantState.LEFT, left_at__lt=before).only("id").limit(limit)]

    @classmethod
    def purge_left(cls, participant_ids: list[str]) -> int:
        """Deletes these participants if they have left (never a joined one)."""
        return cls.objects(id__in=participant_ids, state=ParticipantState.LEFT).delete()

    @classmethod
    def silent_since(cls, before: float) -> list[Participant]:
        return list(cls.objects(state=ParticipantState.JOINED, last_seen_at__lt=before))

    @classmethod
    def set_publishing(cls, participant_id: str, publishing: bool) -> bool:
        """True only for the call that changed the flag, so announcements go out once."""
        return bool(
            cls.objects(id=participant_id, publishing=not publishing, state=ParticipantState.JOINED).update_one(
                set__publishing=publishing
            )
        )

    @classmethod
    def stop_all_publishing(cls, session_id: str) -> None:
        """Nobody of the session publishes any more (its media server is gone)."""
        cls.objects(session_id=session_id, state=ParticipantState.JOINED).update(set__publishing=False)

    @classmethod
    def mark_publishing(cls, participant_id: str, probably_publishing: bool = False) -> bool | None:
        """Sets the flag of a joined participant: True when this call set it (announce it), False
        when it was set already, None when the participant has left (or never was).

        One operation either way, written only when the flag changes: a conditional update when
        it is probably not set yet (a first offer), a read when it probably is (a re-offer).
        """
        participants = cls._get_collection()
        joined = {"_id": participant_id, "state": ParticipantState.JOINED.value}
        for _attempt in range(2):
            if not probably_publishing:
                changed = participants.find_one_and_update(
                    {**joined, "publishing": False}, {"$set": {"publishing": True}}, {"_id": 1}
                )
                if changed is not None:
                    return True
            found = participants.find_one({"_id": participant_id}, {"state": 1, "publishing": 1})
            if found is None or found.get("state") != ParticipantState.JOINED:
                return None
            if found.get("publishing"):
                return False
            probably_publishing = False  # it is not: set it
        return False  # the flag moved under both attempts (a rejoin): that offer is moot

    @classmethod
    def joined_among(cls, participant_ids: list[str]) -> set[str]:
        """Which of these participants are joined: one read, no document built."""
        found = cls._get_collection().find(
            {"_id": {"$in": participant_ids}, "state": ParticipantState.JOINED.value}, {"_id": 1}
        )
        return {doc["_id"] for doc in found}

    @classmethod
    def was_announced(cls, participant_id: str, what: str) -> bool:
        return bool(cls.objects(id=participant_id, announced=what).count())

    @classmethod
    def mark_announced(cls, participant_id: str, what: str) -> None:
        # Set after broadcasting: a crash in between repeats the message rather than losing it.
        cls.objects(id=participant_id).update_one(add_to_set__announced=what)

    @classmethod
    def acquire_poll_lease(
        cls,
        participant_id: str,
        owner: str,
        now: float,
        until: float,
        instance: str = "",
        acked: int = 0,
        session_id: str | None = None,
    ) -> Participant | None:
        """Takes the poll lease if it is free and records the client's acknowledgement, in one write.

        Returns the participant as it is afterwards (its last_seq says whether the outbox holds
        anything beyond `acked`, unless `lease_lapsed`), or None when another poll holds the lease,
        when `acked` is beyond every seq handed out (last_seq), or when the participant is not one
        of `session_id`.
        """
        query = {"id": participant_id, "poll_lease_until__lt": now, "last_seq__gte": acked}
        if session_id is not None:
            query["session_id"] = session_id
        # The document as it was before, so the same write tells whether the previous lease was
        # released (poll_owner cleared) or lapsed; the new values are applied here.
        leased = cls.objects(**query).modify(
            new=False,
            set__poll_owner=owner,
            set__poll_instance=instance or None,
            set__poll_lease_until=until,
            set__last_seen_at=now,
            max__acked_seq=acked,
        )
        if leased is None:
            return None
        leased.lease_lapsed = leased.poll_owner is not None
        leased.poll_owner, leased.poll_instance, leased.poll_lease_until = owner, instance or None, until
        leased.last_seen_at, leased.acked_seq = now, max(leased.acked_seq, acked)
        return leased

    @classmethod
    def checkpoint_poll_lease(
        cls,
        participant_id: str,
        owner: str,
        now: float,
        until: float,
        acked: int,
        last_seq: int,
        dropped_reported: int,
        trimmed: int | None = None,
    ) -> Participant | None:
        """Keeps the lease and writes what its holder recorded since it took it, in one write.

        For a lease kept in-process across polls (messaging.mailbox): returns the participant as
        it is afterwards (its dropped_count and state are news to the holder), or None when the
        lease is no longer `owner`'s (it lapsed and another poll took it).
        """
        changes = {
            "set__poll_lease_until": until,
            "set__last_seen_at": now,
            "max__acked_seq": acked,
            "max__last_seq": last_seq,
            "max__dropped_reported": dropped_reported,
        }
        if trimmed is not None:
            changes["max__trimmed_seq"] = trimmed
        return cls.objects(id=participant_id, poll_owner=owner).modify(new=True, **changes)

    @classmethod
    def acknowledge(cls, participant_id: str, acked: int) -> None:
        cls.objects(id=participant_id, acked_seq__lt=acked).update_one(max__acked_seq=acked)

    @classmethod
    def renew_poll_leases(cls, owners: dict[str, str], now: float, until: float) -> int:
        """Renews the leases of waiting polls ({participant id: poll owner}) and marks those
        participants as seen: one write.

        By owner, not by instance: a lease whose release failed (the database was away when its
        poll ended) belongs to no poll any more and must lapse, not be renewed for ever.
        """
        if not owners:
            return 0
        # Through the collection: with thousands of waiting polls MongoEngine's query building
        # (a field conversion per id) was half of an idle web process's CPU.
        renewed = cls._get_collection().update_many(
            {"_id": {"$in": list(owners)}, "poll_owner": {"$in": list(owners.values())}},
            {"$set": {"poll_lease_until": until, "last_seen_at": now}},
        )
        return renewed.matched_count

    @classmethod
    def catch_up_seq(cls, participant_id: str, highest_stored: int) -> None:
        cls.objects(id=participant_id).update_one(max__last_seq=highest_stored)

    @classmethod
    def count_dropped(cls, participant_id: str, count: int) -> None:
        cls.objects(id=participant_id).update_one(inc__dropped_count=count)

    @classmethod
    def release_poll_lease(
        cls,
        participant_id: str,
        owner: str,
        now: float,
        trimmed: int | None = None,
        last_seq: int | None = None,
        dropped_reported: int | None = None,
        acked: int | None = None,
    ) -> None:
        """Frees the lease; `last_seq` is the highest seq its holder stored in the outbox,
        `dropped_reported` the dropped_count its `messagesDropped` covered, `acked` the client's
        acknowledgement its holder received (a lease kept between polls records it here)."""
        changes = {
            "set__poll_owner": None,
            "set__poll_instance": None,
            "set__poll_lease_until": 0.0,
            "set__last_seen_at": now,
        }
        if acked is not None:
            changes["max__acked_seq"] = acked
        if trimmed is not None:
            changes["max__trimmed_seq"] = trimmed
        if last_seq is not None:
            changes["max__last_seq"] = last_seq
        if dropped_reported is not None:
            changes["max__dropped_reported"] = dropped_reported
        if not cls.objects(id=participant_id, poll_owner=owner).update_one(**changes) and last_seq is not None:
            # The lease lapsed and another poll took it: still, never let last_seq fall behind the outbox.
            cls.catch_up_seq(participant_id, last_seq)
