"""One WebRtcEndpoint of a participant: its own outgoing stream or one subscription.

`stream` is "publish" or the participant id of the publisher being received ("publish:<name>" and
"<pid>:<name>" for named publications: models.streams). ICE candidates
that arrive before the endpoint exists wait in `pending_candidates`; the worker that stores
the endpoint id takes that list in the same atomic operation, so none is lost or used twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from mongoengine import BooleanField, FloatField, IntField, ListField, NotUniqueError, StringField
from pymongo.errors import DuplicateKeyError

from models import streams
from models.base import Document
from models.fields import KurentoObjectField, KurentoProxy, ref_of
from models.streams import PUBLISH

if TYPE_CHECKING:
    from kurento import MediaObject

__all__ = ["PUBLISH", "Endpoint", "FeedState", "NegotiationState", "Publication", "StoredEndpoint"]


@dataclass(frozen=True)
class NegotiationState:
    """What an offer needs to know of a stored endpoint record, read as raw BSON (no document built).

    `kurento` is the stored reference ("<kms url>#<object id>") or None.
    """

    participant_id: str
    stream: str
    kurento: str | None
    negotiating_request_id: str
    negotiating_seed: str
    answered_request_id: str
    answer_sdp: str | None
    answer_published: bool
    muted_audio: bool = False
    muted_video: bool = False

    @classmethod
    def of(cls, doc: dict[str, Any]) -> NegotiationState:
        return cls(
            doc["participant_id"],
            doc["stream"],
            doc.get("kurento"),
            doc.get("negotiating_request_id") or "",
            doc.get("negotiating_seed") or "",
            doc.get("answered_request_id") or "",
            doc.get("answer_sdp"),
            bool(doc.get("answer_published")),
            bool(doc.get("muted_audio")),
            bool(doc.get("muted_video")),
        )


@dataclass(frozen=True)
class Publication:
    """A publish record as seen with the subscriptions it feeds: its endpoint (or None), its mute
    state, and the stored endpoints of its subscribers ({participant id: reference})."""

    participant_id: str
    name: str
    kurento: str | None
    muted_audio: bool
    muted_video: bool
    subscribers: dict[str, str]


@dataclass(frozen=True)
class FeedState:
    """What feeds a publication's subscribers: its publish endpoint reference and mute state."""

    kurento: str
    muted_audio: bool
    muted_video: bool


@dataclass(frozen=True)
class StoredEndpoint:
    """What a candidate needs of a record: whether it exists, the stored endpoint reference (or
    None), and the ICE usernames of the offer that endpoint answered (empty when unknown)."""

    exists: bool
    kurento: str | None
    ice_ufrags: frozenset[str]


_STATE_FIELDS = {field: 1 for field in NegotiationState.__dataclass_fields__} | {"_id": 0}


def _encoded(endpoint: KurentoProxy | str | None) -> str | None:
    ref = ref_of(endpoint)
    return None if ref is None else ref.encode()


class Endpoint(Document):
    session_id = StringField(required=True)
    participant_id = StringField(required=True)
    stream = StringField(required=True)
    kurento = KurentoObjectField(null=True)
    # Candidates as JSON strings: the stand-in stores pushed sub-documents as strings anyway,
    # and scalars keep $push/$pull semantics identical on a real MongoDB.
    pending_candidates = ListField(StringField(), default=list)
    # Its length, kept beside it so the buffering update can stop at the cap with a plain
    # comparison (the stand-in has no $size in queries).
    pending_count = IntField(default=0)
    # The offer this endpoint negotiates: Kurento negotiates an endpoint once, so exactly one
    # request may call processOffer on it; it is claimed when the endpoint is stored (claim_kurento).
    negotiating_request_id = StringField(default="")
    # The message seed of the task run that claimed it (messaging.rerun_identity): a re-run of that
    # same task sends the stored answer again under the same message id (the outbox drops the copy),
    # another task for the same request sends nothing.
    negotiating_seed = StringField(default="")
    # Always present (""): the stand-in's $ne does not match documents that lack the field.
    answered_request_id = StringField(default="")
    answer_sdp = StringField(null=True)
    answer_published = BooleanField(default=False)
    # The ICE usernames (`a=ice-ufrag`, space-separated) of the offer the stored endpoint answered:
    # a trickled candidate names its generation's ufrag, so one for a newer offer (a re-offer whose
    # endpoint is not stored yet) is told apart from one for this endpoint (issue 13).
    ice_ufrags = StringField(default="")
    # The KMS session whose connection receives this endpoint's events (see models.kms_session).
    kms_session = StringField(null=True)
    # Connection watch: when the media connection went bad (0 = healthy), and whether the
    # participant has been told.
    failed_since = FloatField(default=0.0)
    failure_reported = BooleanField(default=False)
    # A publish record's publication (issue 15): the kinds its last answered offer sends ("audio
    # video", "audio", "video" or ""; None before the first), announced with streamPublished when
    # they change; and the kinds the media server stops forwarding to its subscribers (mute), kept
    # across renegotiations.
    kinds = StringField(null=True)
    muted_audio = BooleanField(default=False)
    muted_video = BooleanField(default=False)
    # Set (never cleared) on a publish record once a subscription to it or a recording of it was
    # stored: the claim of a re-offer hands them back, so a re-offer of a publication nobody ever
    # watched or recorded skips reading its subscribers and its recordings (issue 13). Each setter
    # writes the flag after storing its own endpoint or recorder and reads the publish endpoint in
    # that same write, so either the re-offer sees the flag or the setter sees the new endpoint.
    watched = BooleanField(default=False)
    recorded = BooleanField(default=False)

    meta = {
        "collection": "endpoints",
        "indexes": [
            {"fields": ["participant_id", "stream"], "unique": True},
            "session_id",
            ("session_id", "stream"),
            "kms_session",
        ],
    }

    @property
    def publisher_id(self) -> str:
        return streams.publisher_of(self.participant_id, self.stream)

    @classmethod
    def ensure(cls, session_id: str, participant_id: str, stream: str) -> Endpoint | None:
        """Creates the document if missing; concurrent callers end with exactly one.

        Returns the document this call created (as stored), or None when it existed already.
        """
        created = cls(session_id=session_id, participant_id=participant_id, stream=stream)
        try:
            return created.save(force_insert=True)
        except NotUniqueError:
            return None

    @classmethod
    def find(cls, participant_id: str, stream: str) -> Endpoint | None:
        return cls.objects(participant_id=participant_id, stream=stream).first()

    @classmethod
    def buffer_candidates(
        cls,
        participant_id: str,
        stream: str,
        candidates: list[dict],
        cap: int,
        session_id: str | None = None,
        *,
        while_stored: str | None = None,
    ) -> bool:
        """Queues candidates while the record stores `while_stored` (None: no endpoint yet) and fewer
        than `cap` wait (so the document and the burst replayed to the media server stay bounded);
        False once another endpoint is stored, or when these would pass the cap. The next claim takes
        them. With `session_id`, a missing record is created by the same write."""
        encoded = [json.dumps(c, sort_keys=True) for c in candidates]
        query = {
            "participant_id": participant_id,
            "stream": stream,
            "kurento": while_stored,
            "pending_count": {"$lte": cap - len(encoded)},
        }
        update: dict[str, Any] = {
            "$push": {"pending_candidates": {"$each": encoded}},
            "$inc": {"pending_count": len(encoded)},
        }
        if session_id is None:
            return cls._get_collection().update_one(query, update).modified_count > 0
        blank = cls(session_id=session_id, participant_id=participant_id, stream=stream).to_mongo().to_dict()
        update["$setOnInsert"] = {
            k: v
            for k, v in blank.items()
            if k not in ("_id", "participant_id", "stream", "kurento", "pending_candidates", "pending_count")
        }
        try:
            cls._get_collection().update_one(query, update, upsert=True)
        except DuplicateKeyError:
            return False  # it exists, with an endpoint or a full buffer
        return True

    @classmethod
    def negotiation_states(
        cls, participant_id: str, stream: str
    ) -> tuple[NegotiationState | None, NegotiationState | None]:
        """The (participant, stream) record and, for a subscription, its publisher's publish record:
        one indexed read, projected, whatever the stream."""
        mine = {"participant_id": participant_id, "stream": stream}
        query: dict[str, Any]
        if streams.is_publish(stream):
            query = mine
        else:
            publication = {"participant_id": streams.publisher_of(participant_id, stream)}
            query = {"$or": [mine, {**publication, "stream": streams.publish_stream(streams.name_of(stream))}]}
        own = source = None
        for doc in cls._get_collection().find(query, _STATE_FIELDS):
            state = NegotiationState.of(doc)
            if (state.participant_id, state.stream) == (participant_id, stream):
                own = state
            else:
                source = state
        return own, source

    @classmethod
    def stored_kurento(cls, participant_id: str, stream: str) -> StoredEndpoint:
        """Whether the (participant, stream) record exists, its stored endpoint reference and the ICE
        usernames that endpoint negotiated: one projected read."""
        doc = cls._get_collection().find_one(
            {"participant_id": participant_id, "stream": stream}, {"kurento": 1, "ice_ufrags": 1, "_id": 0}
        )
        if doc is None:
            return StoredEndpoint(False, None, frozenset())
        return StoredEndpoint(True, doc.get("kurento"), frozenset((doc.get("ice_ufrags") or "").split()))

    @classmethod
    def claim_kurento(
        cls,
        participant_id: str,
        stream: str,
        endpoint: KurentoProxy,
        request_id: str = "",
        replacing: KurentoProxy | str | None = None,
        *,
        answer: str | None = None,
        seed: str = "",
        session_id: str | None = None,
        ice_ufrags: frozenset[str] = frozenset(),
        kinds: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> list[dict] | None:
        """Stores `endpoint` in place of `replacing` (None: no endpoint yet) and claims its
        negotiation for `request_id` (with its `answer` when known), handing back the candidates
        that waited; one write.

        With `session_id`, a missing record is created by the same write (an offer that found
        none); without, the record must exist. None means the stored endpoint is no longer
        `replacing` (another worker got there first); the caller must release its own.
        With `kinds` (a publish record), they are stored too; `previous` receives the kinds stored before
        and the `watched` and `recorded` flags (absent when this call created the record).
        """
        changes: dict[str, Any] = {
            "kurento": _encoded(endpoint),
            "pending_candidates": [],
            "pending_count": 0,
            "kms_session": endpoint.client.session_id,  # type: ignore[attr-defined]
            "failed_since": 0.0,
            "failure_reported": False,
            "negotiating_request_id": request_id,
            "negotiating_seed": seed,
            "answered_request_id": request_id if answer is not None else "",
            "answer_sdp": answer,
            "answer_published": False,
            "ice_ufrags": " ".join(sorted(ice_ufrags)),
        }
        if kinds is not None:
            changes["kinds"] = kinds
        endpoints = cls._get_collection()
        query: dict[str, Any] = {"participant_id": participant_id, "stream": stream, "kurento": _encoded(replacing)}
        if session_id is not None and replacing is None:
            # Not findAndModify with upsert: nx-27017 neither reports its duplicate key nor applies
            # $setOnInsert there. A record that appeared meanwhile with waiting candidates does not
            # match, so the insert fails on the unique index and the caller reads it again.
            try:
                endpoints.update_one(
                    {**query, "pending_count": 0}, {"$set": {**changes, "session_id": session_id}}, upsert=True
                )
            except DuplicateKeyError:
                return None
            return []
        before = endpoints.find_one_and_update(
            query, {"$set": changes}, {"pending_candidates": 1, "kinds": 1, "watched": 1, "recorded": 1, "_id": 0}
        )
        if before is None:
            return None
        if previous is not None:
            previous["kinds"] = before.get("kinds")
            previous["watched"] = bool(before.get("watched"))
            previous["recorded"] = bool(before.get("recorded"))
        return [json.loads(c) for c in before.get("pending_candidates") or []]

    @classmethod
    def recorded_kurento_refs(cls, among: list[str] | None = None) -> set[str]:
        """The stored references ("<kms url>#<id>") of every endpoint record, or of those `among`."""
        query = {} if among is None else {"kurento": {"$in": among}}
        return {
            doc["kurento"] for doc in cls._get_collection().find(query, {"kurento": 1, "_id": 0}) if doc.get("kurento")
        }

    @classmethod
    def forget(cls, participant_id: str, stream: str, endpoint: MediaObject) -> None:
        """Deletes the record of `endpoint`, only while it is still the stored one."""
        cls.objects(participant_id=participant_id, stream=stream, kurento=endpoint).delete()

    @classmethod
    def linked_to(cls, session_id: str, participant_id: str) -> Iterator[Endpoint]:
        """The participant's endpoints, then every subscription to its publications, read only once the
        caller is done with the first (it discards them): a subscription claimed after that read finds
        its publication gone (Endpoint.watch_publication) and releases itself."""
        own = list(cls.objects(participant_id=participant_id))
        yield from own
        fed = [
            streams.subscription_stream(participant_id, streams.name_of(e.stream))
            for e in own
            if streams.is_publish(e.stream)
        ]
        yield from cls.objects(session_id=session_id, stream__in=sorted({participant_id, *fed}))

    @classmethod
    def publication(cls, session_id: str, participant_id: str, name: str) -> Publication | None:
        """The publish record of (participant, name) with its subscribers' endpoints: one read.
        None when there is no such record."""
        publish = streams.publish_stream(name)
        found = cls._get_collection().find(
            {
                "$or": [
                    {"participant_id": participant_id, "stream": publish},
                    {"session_id": session_id, "stream": streams.subscription_stream(participant_id, name)},
                ]
            },
            {"participant_id": 1, "stream": 1, "kurento": 1, "muted_audio": 1, "muted_video": 1, "_id": 0},
        )
        own: dict[str, Any] | None = None
        subscribers = {}
        for doc in found:
            if doc["participant_id"] == participant_id and doc["stream"] == publish:
                own = doc
            elif doc.get("kurento"):
                subscribers[doc["participant_id"]] = doc["kurento"]
        if own is None:
            return None
        return Publication(
            participant_id,
            name,
            own.get("kurento"),
            bool(own.get("muted_audio")),
            bool(own.get("muted_video")),
            subscribers,
        )

    @classmethod
    def watch_publication(cls, publisher_id: str, name: str) -> FeedState | None:
        """After a subscription's claim: marks the publication `watched` and reads what feeds it now (its
        publish endpoint and mute state), one write. None when it is gone (unpublished, or its publisher left)."""
        doc = cls._get_collection().find_one_and_update(
            {"participant_id": publisher_id, "stream": streams.publish_stream(name)},
            {"$set": {"watched": True}},
            {"kurento": 1, "muted_audio": 1, "muted_video": 1, "_id": 0},
        )
        if doc is None or not doc.get("kurento"):
            return None
        return FeedState(doc["kurento"], bool(doc.get("muted_audio")), bool(doc.get("muted_video")))

    @classmethod
    def mark_recorded(cls, participant_id: str, stream: str) -> str | None:
        """After a recorder's claim: marks the publication `recorded` and returns its publish endpoint
        now (None when it has none), one write."""
        doc = cls._get_collection().find_one_and_update(
            {"participant_id": participant_id, "stream": stream}, {"$set": {"recorded": True}}, {"kurento": 1, "_id": 0}
        )
        return None if doc is None else doc.get("kurento")

    @classmethod
    def mute_state(cls, participant_id: str, name: str) -> tuple[bool, bool] | None:
        """(muted_audio, muted_video) of a publication, or None without a record: one projected read."""
        doc = cls._get_collection().find_one(
            {"participant_id": participant_id, "stream": streams.publish_stream(name)},
            {"muted_audio": 1, "muted_video": 1, "_id": 0},
        )
        return None if doc is None else (bool(doc.get("muted_audio")), bool(doc.get("muted_video")))

    @classmethod
    def publication_names(cls, participant_id: str, session_id: str | None = None) -> set[str]:
        """The names of the participant's publish records (an endpoint stored or not; of `session_id`
        only, when given): one read."""
        query = {"participant_id": participant_id} | ({} if session_id is None else {"session_id": session_id})
        found = cls._get_collection().find(query, {"stream": 1, "_id": 0})
        return {streams.name_of(doc["stream"]) for doc in found if streams.is_publish(doc["stream"])}

    @classmethod
    def set_muted(cls, session_id: str, participant_id: str, name: str, audio: bool | None, video: bool | None) -> bool:
        """Stores the mute state of a publication (the kinds given); False when it has no record."""
        changes = {f"muted_{kind}": value for kind, value in (("audio", audio), ("video", video)) if value is not None}
        query = {"participant_id": participant_id, "stream": streams.publish_stream(name), "session_id": session_id}
        if not changes:
            return cls._get_collection().count_documents(query, limit=1) > 0
        return cls._get_collection().update_one(query, {"$set": changes}).matched_count > 0

    @classmethod
    def detach_publication(cls, session_id: str, participant_id: str, name: str) -> tuple[bool, list[str]]:
        """Removes a publication's record and its subscriptions' from the record: whether this call
        removed the publication's (it announces the end), and the stored references to release.

        The publication's record goes first, then its subscriptions are read: a subscription claimed
        after that read finds the publication gone (Endpoint.watch_publication) and releases itself."""
        gone = cls._get_collection().find_one_and_delete(
            {"participant_id": participant_id, "stream": streams.publish_stream(name)}, {"kurento": 1, "_id": 0}
        )
        refs = [gone["kurento"]] if gone is not None and gone.get("kurento") else []
        for stored in cls.objects(session_id=session_id, stream=streams.subscription_stream(participant_id, name)):
            raw = stored.to_mongo().get("kurento")
            if cls.discard(stored.id) and raw:
                refs.append(raw)
        return gone is not None, refs

    @classmethod
    def discard(cls, endpoint_id: ObjectId) -> bool:
        """Deletes one record whatever it holds; False if it was already gone."""
        return bool(cls.objects(id=endpoint_id).delete())

    @classmethod
    def count_under_kms_session(cls, kms_session: str) -> int:
        """How many recorded endpoints deliver their events through this KMS session."""
        return cls.objects(kms_session=kms_session, kurento__ne=None).count()

    @classmethod
    def forget_all_in(cls, session_id: str) -> None:
        """Deletes every endpoint record of the session (its pipeline is released or lost)."""
        cls.objects(session_id=session_id).delete()

    @classmethod
    def detach_all_of(cls, session_id: str, participant_id: str) -> list[str]:
        """Removes the participant's endpoints and the subscriptions to its stream from the record.

        Returns their stored Kurento references for release; offers made from now on start
        from fresh documents, so a release still running cannot touch them.
        """
        refs = []
        for stored in cls.linked_to(session_id, participant_id):
            raw = stored.to_mongo().get("kurento")
            if cls.discard(stored.id) and raw:
                refs.append(raw)
        return refs

    @classmethod
    def mark_failing(
        cls, participant_id: str, stream: str, now: float, endpoint: KurentoProxy | str | None = None
    ) -> bool:
        """Starts the debounce clock; True only when it was not running. With `endpoint`, only while
        that is the stored endpoint: events of one being replaced say nothing of its successor."""
        query: dict[str, Any] = {"participant_id": participant_id, "stream": stream, "failed_since": 0.0}
        if endpoint is not None:
            query["kurento"] = _encoded(endpoint)
        return cls._get_collection().update_one(query, {"$set": {"failed_since": now}}).modified_count > 0

    @classmethod
    def mark_recovered(cls, participant_id: str, stream: str, endpoint: KurentoProxy | str | None = None) -> None:
        """Stops the debounce clock (of `endpoint` only, when given); a write only when it runs."""
        query: dict[str, Any] = {"participant_id": participant_id, "stream": stream, "failed_since": {"$gt": 0.0}}
        if endpoint is not None:
            query["kurento"] = _encoded(endpoint)
        cls._get_collection().update_one(query, {"$set": {"failed_since": 0.0, "failure_reported": False}})

    @classmethod
    def failing_since(cls, participant_id: str, stream: str) -> float:
        """When the stream's debounce clock started and no report was made yet (0: not failing)."""
        doc = cls._get_collection().find_one(
            {"participant_id": participant_id, "stream": stream, "failure_reported": False},
            {"failed_since": 1, "_id": 0},
        )
        return float(doc.get("failed_since") or 0.0) if doc is not None else 0.0

    @classmethod
    def claim_failure_report(cls, participant_id: str, stream: str, failing_before: float) -> bool:
        """True once per failure that lasted past the debounce period."""
        return bool(
            cls.objects(
                participant_id=participant_id,
                stream=stream,
                failed_since__gt=0.0,
                failed_since__lte=failing_before,
                failure_reported=False,
            ).update_one(set__failure_reported=True)
        )

    @classmethod
    def record_failed_offer(
        cls,
        participant_id: str,
        stream: str,
        request_id: str,
        replacing: KurentoProxy | str | None = None,
        session_id: str | None = None,
    ) -> bool:
        """Records that the offer `request_id` ended without an answer (its processOffer was cut off),
        so a redelivery repeats the error instead of calling processOffer again.

        Only while the record still stores `replacing` (what the offer found): a later offer that
        replaced it meanwhile keeps its own outcome. With `session_id`, a missing record is created.
        """
        query: dict[str, Any] = {"participant_id": participant_id, "stream": stream, "kurento": _encoded(replacing)}
        changes: dict[str, Any] = {"answered_request_id": request_id, "answer_sdp": None, "answer_published": True}
        if session_id is None:
            return cls._get_collection().update_one(query, {"$set": changes}).modified_count > 0
        # The other fields as a new document has them, only if this creates it: a record that
        # holds candidates waiting for an endpoint keeps them.
        blank = cls(session_id=session_id, participant_id=participant_id, stream=stream).to_mongo().to_dict()
        fresh = {k: v for k, v in blank.items() if k not in changes and k not in query and k != "_id"}
        try:
            cls._get_collection().update_one(query, {"$set": changes, "$setOnInsert": fresh}, upsert=True)
        except DuplicateKeyError:
            return False
        return True

    @classmethod
    def record_published_answer(cls, participant_id: str, stream: str, request_id: str, sdp: str) -> bool:
        """Records that the answer of a request went out; False if it was recorded already."""
        return bool(
            cls.objects(participant_id=participant_id, stream=stream, answered_request_id__ne=request_id).update_one(
                set__answered_request_id=request_id, set__answer_sdp=sdp, set__answer_published=True
            )
        )
