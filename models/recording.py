"""One recording of a publication by a Kurento RecorderEndpoint: its state, its file and its recorder.

States go `starting` (accepted; the recorder is being created, or waits for media) → `recording`
(KMS raised `Recording`) → `stopped` (the media server finished the file), or `failed` (the media
server reported an error, or was lost with the file unfinished). Every change is a conditional
update on the state, so the worker that makes it is the one that announces it; `announced`
remembers what went out, so a task run again announces what its first run could not.

`kurento` is the recorder ("<kms url>#<id>") while it exists: the orphan sweep releases recorders
no record names, as it does endpoints (media_tasks.orphan_sweep).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mongoengine import DateTimeField, FloatField, ListField, StringField

from models.base import Document
from models.fields import KurentoObjectField, KurentoProxy, ref_of
from settings import VAR_DIR, Settings


class RecordingState(StrEnum):
    STARTING = "starting"
    RECORDING = "recording"
    STOPPED = "stopped"
    FAILED = "failed"


ACTIVE = [RecordingState.STARTING.value, RecordingState.RECORDING.value]
MAIN = "main"
# REST profile → (Kurento MediaProfileSpecType, file extension).
PROFILES = {"webm": ("WEBM", "webm"), "mp4": ("MP4", "mp4"), "webm-audio": ("WEBM_AUDIO_ONLY", "webm")}
REASONS = ("stopped", "unpublished", "left", "sessionClosed", "mediaServerLost", "error")


def recordings_base(settings: Settings) -> str:
    """RECORDINGS_URI without a trailing slash; unset: `file://` + ./var/recordings (what `make run` uses)."""
    return (settings.recordings_uri or f"file://{VAR_DIR / 'recordings'}").rstrip("/")


def uri_for(settings: Settings, session_id: str, recording_id: str, profile: str) -> str:
    return f"{recordings_base(settings)}/{session_id}/{recording_id}.{PROFILES[profile][1]}"


def stream_of(name: str) -> str:
    """The Endpoint `stream` of a publication name: "main" is "publish", another is "publish:<name>"."""
    return "publish" if name == MAIN else f"publish:{name}"


def _encoded(recorder: KurentoProxy | str | None) -> str | None:
    ref = ref_of(recorder)
    return None if ref is None else ref.encode()


class Recording(Document):
    id = StringField(primary_key=True, default=lambda: uuid.uuid4().hex)
    session_id = StringField(required=True)
    participant_id = StringField(required=True)
    name = StringField(default=MAIN)
    profile = StringField(required=True)
    uri = StringField(required=True)
    state = StringField(default=RecordingState.STARTING, choices=[s.value for s in RecordingState])
    kurento = KurentoObjectField(null=True)
    # The KMS session whose connection receives the recorder's events (see models.kms_session).
    kms_session = StringField(null=True)
    created_at = DateTimeField(default=lambda: datetime.now(UTC))
    # Unix times: the stand-in reads a date written by $set back as a string.
    started_at = FloatField(null=True)
    stopped_at = FloatField(null=True)
    # Why it stops: the first stop asked for wins ("" while none was; the stand-in matches "" reliably).
    stop_reason = StringField(default="")
    # The reason it ended with, once it did (null before).
    reason = StringField(null=True)
    announced = ListField(StringField(), default=list)

    meta = {
        "collection": "recordings",
        "indexes": [("session_id", "created_at"), ("participant_id", "name", "state"), "kurento"],
    }

    @classmethod
    def create(cls, session_id: str, participant_id: str, name: str, profile: str, uri_of: Any) -> Recording:
        """Stores a new `starting` recording; `uri_of(recording_id)` names its file."""
        recording_id = uuid.uuid4().hex
        recording = cls(
            id=recording_id,
            session_id=session_id,
            participant_id=participant_id,
            name=name,
            profile=profile,
            uri=uri_of(recording_id),
        )
        return recording.save(force_insert=True)

    @classmethod
    def find_in(cls, session_id: str, recording_id: str) -> Recording | None:
        return cls.objects(id=recording_id, session_id=session_id).first()

    @classmethod
    def find(cls, recording_id: str) -> Recording | None:
        return cls.objects(id=recording_id).first()

    @classmethod
    def all_in(cls, session_id: str) -> list[Recording]:
        return list(cls.objects(session_id=session_id).order_by("created_at"))

    @classmethod
    def active_ids(cls, session_id: str, participant_id: str | None = None) -> list[str]:
        """The session's (or one participant's) recordings not ended yet: one indexed, projected read."""
        query: dict[str, Any] = {"session_id": session_id, "state": {"$in": ACTIVE}}
        if participant_id is not None:
            query["participant_id"] = participant_id
        return [doc["_id"] for doc in cls._get_collection().find(query, {"_id": 1})]

    @classmethod
    def active_recorders_of(cls, participant_id: str, name: str) -> list[str]:
        """The recorders ("<kms url>#<id>") of the publication's running recordings: one projected read."""
        query = {"participant_id": participant_id, "name": name, "state": {"$in": ACTIVE}, "kurento": {"$ne": None}}
        found = cls._get_collection().find(query, {"kurento": 1, "_id": 0})
        return [doc["kurento"] for doc in found if doc.get("kurento")]

    @classmethod
    def claim_recorder(cls, recording_id: str, recorder: KurentoProxy) -> bool:
        """Stores the recorder of a running recording that has none (its `Recording` event may have come
        first); False when it has one already or ended meanwhile (a stop came first): the caller
        releases its own."""
        return bool(
            cls._get_collection()
            .update_one(
                {"_id": recording_id, "state": {"$in": ACTIVE}, "kurento": None},
                {"$set": {"kurento": _encoded(recorder), "kms_session": recorder.client.session_id}},  # type: ignore[attr-defined]
            )
            .modified_count
        )

    @classmethod
    def mark_recording(cls, recording_id: str) -> bool:
        """`starting` → `recording`; True for the one caller that made the change."""
        return bool(
            cls.objects(id=recording_id, state=RecordingState.STARTING).update_one(
                set__state=RecordingState.RECORDING, set__started_at=time.time()
            )
        )

    @classmethod
    def ask_stop(cls, recording_id: str, reason: str) -> None:
        """Records why it stops, unless another stop said so first."""
        cls.objects(id=recording_id, stop_reason="", state__in=ACTIVE).update_one(set__stop_reason=reason)

    @classmethod
    def mark_ended(cls, recording_id: str, recorder: KurentoProxy | str | None, failed: bool, reason: str) -> bool:
        """Ends a running recording while it still stores `recorder`, with the first stop's reason, else
        `reason`; False when it is not running, or another worker changed it since (read again)."""
        collection = cls._get_collection()
        doc = collection.find_one({"_id": recording_id}, {"stop_reason": 1})
        if doc is None:
            return False
        asked = doc.get("stop_reason") or ""
        query = {"_id": recording_id, "state": {"$in": ACTIVE}, "kurento": _encoded(recorder), "stop_reason": asked}
        state = RecordingState.FAILED if failed else RecordingState.STOPPED
        changes = {"state": state.value, "stopped_at": time.time(), "kurento": None, "reason": asked or reason}
        return collection.update_one(query, {"$set": changes}).modified_count > 0

    @classmethod
    def recorders_under_kms_session(cls, kms_session: str) -> list[Recording]:
        """The running recorders whose events this KMS session receives (a takeover listens to them)."""
        return list(cls.objects(kms_session=kms_session, kurento__ne=None))

    @classmethod
    def was_announced(cls, recording_id: str, what: str) -> bool:
        return cls.objects(id=recording_id, announced=what).count() > 0

    @classmethod
    def mark_announced(cls, recording_id: str, what: str) -> None:
        cls.objects(id=recording_id).update_one(add_to_set__announced=what)

    @classmethod
    def recorded_kurento_refs(cls, among: list[str] | None = None) -> set[str]:
        """The stored recorders of every recording, or of those `among` (for the orphan sweep)."""
        query = {"kurento": {"$ne": None}} if among is None else {"kurento": {"$in": among}}
        found = cls._get_collection().find(query, {"kurento": 1, "_id": 0})
        return {doc["kurento"] for doc in found if doc.get("kurento")}
