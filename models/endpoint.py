"""One WebRtcEndpoint of a participant: its own outgoing stream or one subscription.

`stream` is "publish" or the participant id of the publisher being received. ICE candidates
that arrive before the endpoint exists wait in `pending_candidates`; the worker that stores
the endpoint id takes that list in the same atomic operation, so none is lost or used twice.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bson import ObjectId
from mongoengine import BooleanField, FloatField, IntField, ListField, NotUniqueError, StringField

from models.base import Document
from models.fields import KurentoObjectField

if TYPE_CHECKING:
    from kurento import MediaObject

PUBLISH = "publish"


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
    # Always present (""): the stand-in's $ne does not match documents that lack the field.
    answered_request_id = StringField(default="")
    answer_sdp = StringField(null=True)
    answer_published = BooleanField(default=False)
    # The KMS session whose connection receives this endpoint's events (see models.kms_session).
    kms_session = StringField(null=True)
    # Connection watch: when the media connection went bad (0 = healthy), and whether the
    # participant has been told.
    failed_since = FloatField(default=0.0)
    failure_reported = BooleanField(default=False)

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
        return self.participant_id if self.stream == PUBLISH else self.stream

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
    def buffer_candidates(cls, participant_id: str, stream: str, candidates: list[dict], cap: int) -> bool:
        """Queues candidates while the endpoint has no Kurento object and fewer than `cap` wait
        (so the document and the burst replayed to the media server stay bounded); False once it
        has one, or when these would pass the cap."""
        encoded = [json.dumps(c, sort_keys=True) for c in candidates]
        return bool(
            cls.objects(
                participant_id=participant_id, stream=stream, kurento=None, pending_count__lte=cap - len(encoded)
            ).update_one(push_all__pending_candidates=encoded, inc__pending_count=len(encoded))
        )

    @classmethod
    def claim_kurento(
        cls,
        participant_id: str,
        stream: str,
        endpoint: MediaObject,
        request_id: str = "",
        replacing: MediaObject | None = None,
    ) -> list[dict] | None:
        """Stores `endpoint` in place of `replacing` (None: no endpoint yet) and claims its
        negotiation for `request_id`, handing back the candidates that waited; one write.

        None means the stored endpoint is no longer `replacing` (another worker got there first);
        the caller must release its own.
        """
        before = cls.objects(participant_id=participant_id, stream=stream, kurento=replacing).modify(
            set__kurento=endpoint,
            set__pending_candidates=[],
            set__pending_count=0,
            set__kms_session=endpoint.client.session_id,
            set__failed_since=0.0,
            set__failure_reported=False,
            set__negotiating_request_id=request_id,
            set__answered_request_id="",
            set__answer_sdp=None,
            set__answer_published=False,
        )
        if before is None:
            return None
        return [json.loads(c) for c in before.pending_candidates]

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
    def linked_to(cls, session_id: str, participant_id: str) -> list[Endpoint]:
        """The participant's endpoints and every subscription to its stream."""
        return [
            *cls.objects(participant_id=participant_id),
            *cls.objects(session_id=session_id, stream=participant_id),
        ]

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
    def mark_failing(cls, participant_id: str, stream: str, now: float) -> bool:
        """Starts the debounce clock; True only when it was not running."""
        return bool(
            cls.objects(participant_id=participant_id, stream=stream, failed_since=0.0).update_one(
                set__failed_since=now
            )
        )

    @classmethod
    def mark_recovered(cls, participant_id: str, stream: str) -> None:
        cls.objects(participant_id=participant_id, stream=stream).update_one(
            set__failed_since=0.0, set__failure_reported=False
        )

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
    def record_failed_offer(cls, participant_id: str, stream: str, request_id: str) -> bool:
        """Records that the offer `request_id` ended without an answer (its processOffer was cut off),
        so a redelivery repeats the error instead of calling processOffer again."""
        return bool(
            cls.objects(participant_id=participant_id, stream=stream, negotiating_request_id=request_id).update_one(
                set__answered_request_id=request_id, set__answer_sdp=None, set__answer_published=True
            )
        )

    @classmethod
    def record_published_answer(cls, participant_id: str, stream: str, request_id: str, sdp: str) -> bool:
        """Records that the answer of a request went out; False if it was recorded already."""
        return bool(
            cls.objects(participant_id=participant_id, stream=stream, answered_request_id__ne=request_id).update_one(
                set__answered_request_id=request_id, set__answer_sdp=sdp, set__answer_published=True
            )
        )
