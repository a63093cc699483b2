"""A signaling session (a room): its pipeline, its size limit and its join secret."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mongoengine import DateTimeField, FloatField, IntField, ListField, Q, StringField

from models import clock
from models.base import Document
from models.fields import KurentoObjectField

if TYPE_CHECKING:
    from kurento import MediaPipeline


class SessionState(StrEnum):
    OPEN = "open"
    MEDIA_LOST = "media_lost"
    CLOSED = "closed"


def new_id() -> str:
    return uuid.uuid4().hex


def new_join_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class SessionPage:
    sessions: list[Session]
    next_after: str | None
    """The list_key the next page starts after (the last session's); None on the last page."""


def list_key(created_at: datetime, session_id: str) -> str:
    """A session's place in the listing: creation time in ms, then its id for sessions created in the same ms.
    Fixed-width digits, so string order is creation order."""
    aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)  # as read back: naive UTC
    ms = (aware - EPOCH) // timedelta(milliseconds=1)
    return f"{ms:013d}.{session_id}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


BANDWIDTH_FIELDS = ("max_video_send_bandwidth", "min_video_send_bandwidth", "max_video_recv_bandwidth")


class Session(Document):
    id = StringField(primary_key=True, default=new_id)
    name = StringField(default="")
    state = StringField(default=SessionState.OPEN, choices=[s.value for s in SessionState])
    max_participants = IntField(required=True)
    # Per-session bandwidth defaults passed to the media server (kbps; 0 = its own default), issue 15:
    # on subscription endpoints (what KMS sends) and on publish endpoints (what it receives). Never change.
    max_video_send_bandwidth = IntField(default=0)
    min_video_send_bandwidth = IntField(default=0)
    max_video_recv_bandwidth = IntField(default=0)
    participant_count = IntField(default=0)
    # Places being taken: "<participant id> <database time>" from a join's reservation until that join
    # stored its participant (issue 16, item 7). Whoever removes an entry decides: the join, which then
    # completes, or the lifetime sweep once ADMISSION_GRACE_S has passed, which gives the place back
    # (the join was cut off: a paused database, a killed web process). `admitting_count` is its length,
    # so the sweep finds such sessions with a plain comparison (the stand-in has no $size in queries).
    admitting = ListField(StringField(), default=list)
    admitting_count = IntField(default=0)
    join_token = StringField(default=new_join_token)
    pipeline = KurentoObjectField(null=True)
    kms_url = StringField(null=True)
    lost_kms_url = StringField(null=True)
    # Pipelines ("<kms url>#<id>") of a media server given up for dead while it may still hold them
    # (paused, partitioned, not crashed): the orphan sweep releases them once it answers again.
    abandoned_pipelines = ListField(StringField(), default=list)
    # Who is creating the pipeline now, and until when the claim holds: the one claimer creates
    # it, everyone else waits for it; a claim whose holder died lapses at `pipeline_claim_until`.
    pipeline_claim = StringField(default="")
    pipeline_claim_until = FloatField(default=0.0)
    created_at = DateTimeField(default=lambda: datetime.now(UTC))
    announced = ListField(StringField(), default=list)
    # Wall-clock time since which no participant has held a place: the creation, then each
    # release of a place (read only while participant_count is 0). EMPTY_SESSION_TIMEOUT_S.
    empty_since = FloatField(default=clock.now)
    # When it was closed: its record is deleted RETENTION_S later (TTL index on a date, and the sweep).
    closed_at = DateTimeField(null=True)
    # Its place in the listing (Session.page), from created_at and id; sessions stored before it
    # existed get it from the lifetime sweep (Session.backfill_list_keys).
    list_key = StringField(null=True)

    meta = {
        "collection": "sessions",
        "indexes": [
            "kms_url",
            # Session.page: the listing, newest first, with or without its state filter, walks one of
            # these from the cursor and stops after one page. The second also serves every query on
            # state alone (its prefix), so state has no index of its own. One field rather than
            # (created_at, _id): the nx-27017 stand-in cannot index _id in a compound index.
            "-list_key",
            ("state", "-list_key"),
            "admitting_count",
        ],
    }

    @classmethod
    def page(cls, state: str | None, after: str | None, limit: int) -> SessionPage:
        """Sessions newest first (`state` only, when given), from just after the list_key `after`: one
        indexed query. A list_key is unique and fixed at creation, so paging never repeats or skips a
        session whatever is created meanwhile (new ones sort before every cursor)."""
        query = Q() if state is None else Q(state=state)
        if after is not None:
            query &= Q(list_key__lt=after)
        found = list(
            cls.objects(query)
            .order_by("-list_key")
            .only("id", "name", "state", "participant_count", "created_at", "list_key")
            .limit(limit + 1)  # one more than the page says whether another page follows
        )
        sessions = found[:limit]
        return SessionPage(sessions, sessions[-1].list_key if len(found) > limit else None)

    @classmethod
    def backfill_list_keys(cls, limit: int = 500) -> int:
        """Gives up to `limit` sessions stored before the listing existed their list_key; the key comes
        from fields that never change, so racing sweeps write the same value."""
        done = 0
        for session in cls.objects(list_key=None).only("id", "created_at").limit(limit):
            key = list_key(session.created_at, session.id)
            done += cls.objects(id=session.id, list_key=None).update_one(set__list_key=key)
        return done

    @classmethod
    def create(cls, name: str, max_participants: int, **bandwidth: int) -> Session:
        """Stores a new open session; its id and join token are generated here. `bandwidth`: the
        BANDWIDTH_FIELDS given (kbps)."""
        session = cls(name=name, max_participants=max_participants, **bandwidth)
        session.list_key = list_key(session.created_at, session.id)
        session.save(force_insert=True)
        return session

    @classmethod
    def bandwidth_of(cls, session_id: str) -> dict[str, int]:
        """The session's non-zero bandwidth defaults ({field: kbps}): one projected read."""
        found = cls._get_collection().find_one({"_id": session_id}, dict.fromkeys(BANDWIDTH_FIELDS, 1))
        return {field: int(found[field]) for field in BANDWIDTH_FIELDS if found and found.get(field)}

    @classmethod
    def find(cls, session_id: str) -> Session | None:
        return cls.objects(id=session_id).first()

    @classmethod
    def rotate_join_token(cls, session_id: str) -> str | None:
        """A new shared join token for a session not closed (the old one is refused from this write
        on); None when there is no such open session."""
        token = new_join_token()
        changed = cls.objects(id=session_id, state__ne=SessionState.CLOSED).update_one(set__join_token=token)
        return token if changed else None

    @classmethod
    def reserve_slot(cls, session_id: str, participant_id: str, now: float) -> str | None:
        """Takes one place if the session is open and not full, atomic against racing joins; returns the
        admission entry the join settles (settle_admission) once its participant is stored, else None."""
        # max_participants never changes after creation, so reading it first is safe; the
        # count itself is only ever moved by conditional $inc.
        doc = cls.objects(id=session_id).only("max_participants", "state").first()
        if doc is None or doc.state == SessionState.CLOSED:
            return None
        entry = f"{participant_id} {now:.3f}"
        reserved = cls._get_collection().update_one(
            {
                "_id": session_id,
                "participant_count": {"$lt": doc.max_participants},
                "state": {"$ne": SessionState.CLOSED},
            },
            {"$inc": {"participant_count": 1, "admitting_count": 1}, "$push": {"admitting": entry}},
        )
        return entry if reserved.modified_count else None

    @classmethod
    def settle_admission(cls, session_id: str, entry: str) -> str | None:
        """The join's participant is stored: its place is its own from now on. Returns the session's
        state (a close may have come meanwhile), or None when the sweep gave the place back first."""
        doc = cls._get_collection().find_one_and_update(
            {"_id": session_id, "admitting": entry},
            {"$pull": {"admitting": entry}, "$inc": {"admitting_count": -1}},
            {"state": 1},
        )
        return None if doc is None else str(doc["state"])

    @classmethod
    def revoke_admission(cls, session_id: str, entry: str, now: float) -> bool:
        """Gives back the place of a join that did not settle; False when the entry is gone (settled,
        or revoked already): exactly one of the join and the sweep gives it back."""
        revoked = cls._get_collection().update_one(
            {"_id": session_id, "admitting": entry, "participant_count": {"$gt": 0}},
            {
                "$pull": {"admitting": entry},
                "$inc": {"admitting_count": -1, "participant_count": -1},
                "$set": {"empty_since": now},
            },
        )
        return revoked.modified_count > 0

    @classmethod
    def stale_admissions(cls, taken_before: float) -> list[tuple[str, str]]:
        """(session id, entry) of every place reserved before `taken_before` and not settled: one indexed read."""
        stale = []
        for doc in cls._get_collection().find({"admitting_count": {"$gt": 0}}, {"admitting": 1}):
            for entry in doc.get("admitting") or []:
                _pid, _, at = entry.rpartition(" ")
                if float(at) < taken_before:
                    stale.append((doc["_id"], entry))
        return stale

    @classmethod
    def is_closed(cls, session_id: str) -> bool:
        return bool(cls.objects(id=session_id, state=SessionState.CLOSED).count())

    @classmethod
    def release_slot(cls, session_id: str, now: float | None = None) -> None:
        # Every release restarts the empty clock in the same write: when the count reaches 0, the
        # last release is when the session became empty, whatever order racing joins and leaves took.
        cls.objects(id=session_id, participant_count__gt=0).update_one(
            dec__participant_count=1, set__empty_since=clock.now() if now is None else now
        )

    @classmethod
    def empty_before(cls, before: float) -> list[str]:
        """Ids of the sessions not closed that nobody has held a place in since before `before`."""
        return [
            s.id
            for s in cls.objects(participant_count=0, empty_since__lt=before, state__ne=SessionState.CLOSED).only("id")
        ]

    @classmethod
    def close_if_empty(cls, session_id: str, empty_before: float) -> Session | None:
        """Closes the session only if it is still empty since before `empty_before`: atomic against
        a join (Session.reserve_slot), so either the join gets its place or the session closes."""
        return cls.objects(
            id=session_id, participant_count=0, empty_since__lt=empty_before, state__ne=SessionState.CLOSED
        ).modify(set__state=SessionState.CLOSED, set__closed_at=datetime.now(UTC))

    @classmethod
    def claim_pipeline_creation(cls, session_id: str, claimer: str, now: float, until: float) -> bool:
        """True for the one caller that may create the pipeline now: none is stored, the session is
        not closed, and no other claim is still running."""
        # A session stored before the claim fields existed has no pipeline_claim_until at all.
        free = Q(pipeline_claim_until__lt=now) | Q(pipeline_claim_until__exists=False)
        return bool(
            cls.objects(free, id=session_id, pipeline=None, state__ne=SessionState.CLOSED).update_one(
                set__pipeline_claim=claimer, set__pipeline_claim_until=until
            )
        )

    @classmethod
    def drop_pipeline_claim(cls, session_id: str, claimer: str) -> None:
        """The claimer could not create the pipeline: the next caller may try at once."""
        cls.objects(id=session_id, pipeline_claim=claimer).update_one(
            set__pipeline_claim="", set__pipeline_claim_until=0.0
        )

    @classmethod
    def claim_pipeline(cls, session_id: str, pipeline: MediaPipeline) -> Session | None:
        """Stores the pipeline only if none is set yet (and ends any creation claim); None tells
        the caller it lost the race."""
        return cls.objects(id=session_id, pipeline=None, state__ne=SessionState.CLOSED).modify(
            new=True,
            set__pipeline=pipeline,
            set__kms_url=pipeline.client.url,
            set__state=SessionState.OPEN,
            set__pipeline_claim="",
            set__pipeline_claim_until=0.0,
        )

    @classmethod
    def was_announced(cls, session_id: str, what: str) -> bool:
        return bool(cls.objects(id=session_id, announced=what).count())

    @classmethod
    def mark_announced(cls, session_id: str, what: str) -> None:
        cls.objects(id=session_id).update_one(add_to_set__announced=what)

    @classmethod
    def mark_media_lost(cls, session_id: str, kms_url: str) -> bool:
        """Forgets the pipeline of a dead server, keeping its reference among `abandoned_pipelines`
        (a server that only stopped answering may come back holding it); True only for the call
        that did it. A read, then a write conditional on what was read."""
        sessions = cls._get_collection()
        query = {"_id": session_id, "kms_url": kms_url, "state": SessionState.OPEN.value}
        for _attempt in range(3):
            found = sessions.find_one(query, {"pipeline": 1})
            if found is None:
                return False
            pipeline = found.get("pipeline")
            update: dict[str, Any] = {
                "$set": {
                    "state": SessionState.MEDIA_LOST.value,
                    "lost_kms_url": kms_url,
                    "pipeline": None,
                    "kms_url": None,
                }
            }
            if pipeline is not None:
                update["$push"] = {"abandoned_pipelines": pipeline}
            if sessions.update_one({**query, "pipeline": pipeline}, update).modified_count:
                return True
        return False  # its pipeline kept changing under us: another fail-over or a close is at work

    @classmethod
    def abandoned(cls) -> list[tuple[str, str]]:
        """(session id, pipeline reference) of every abandoned pipeline still to release."""
        found = cls._get_collection().find(
            {"abandoned_pipelines": {"$exists": True, "$ne": []}}, {"abandoned_pipelines": 1}
        )
        return [(doc["_id"], ref) for doc in found for ref in doc.get("abandoned_pipelines") or []]

    @classmethod
    def forget_abandoned(cls, session_id: str, ref: str) -> None:
        cls._get_collection().update_one({"_id": session_id}, {"$pull": {"abandoned_pipelines": ref}})

    @classmethod
    def on_server(cls, kms_url: str) -> list[str]:
        return [s.id for s in cls.objects(kms_url=kms_url, state=SessionState.OPEN).only("id")]

    @classmethod
    def mark_closed(cls, session_id: str) -> Session | None:
        """Returns the session as it was when this call closed it, None if already closed."""
        return cls.objects(id=session_id, state__ne=SessionState.CLOSED).modify(
            set__state=SessionState.CLOSED, set__closed_at=datetime.now(UTC)
        )

    @classmethod
    def purge_closed(cls, closed_before: datetime) -> int:
        """Deletes sessions closed before `closed_before` (what their TTL index does on MongoDB)."""
        return cls.objects(state=SessionState.CLOSED, closed_at__lt=closed_before).delete()
