"""The messages a participant receives, as the REST contract names them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict


class SdpAnswer(TypedDict):
    type: Literal["sdpAnswer"]
    stream: str
    sdp: str
    request_id: str


class IceCandidate(TypedDict):
    type: Literal["iceCandidate"]
    stream: str
    candidate: Mapping[str, Any]  # RTCIceCandidateInit's fields (media_tasks.kms_events)


class IceGatheringDone(TypedDict):
    type: Literal["iceGatheringDone"]
    stream: str


class ParticipantJoined(TypedDict):
    type: Literal["participantJoined"]
    participant_id: str
    display_name: str
    role: str
    metadata: dict[str, Any]


class ParticipantLeft(TypedDict):
    """`reason`: "left" (its own leave), "removed" (by a moderator or the API key), "timeout"
    (it stopped polling)."""

    type: Literal["participantLeft"]
    participant_id: str
    reason: str


class StreamPublished(TypedDict):
    type: Literal["streamPublished"]
    participant_id: str
    name: str
    audio: bool
    video: bool


class StreamUnpublished(TypedDict):
    type: Literal["streamUnpublished"]
    participant_id: str
    name: str
    reason: str


class StreamMuted(TypedDict):
    """Each kind is True while the media server does not forward it to the publication's subscribers."""

    type: Literal["streamMuted"]
    participant_id: str
    name: str
    audio: bool
    video: bool


class RecordingStarted(TypedDict):
    type: Literal["recordingStarted"]
    recording_id: str
    participant_id: str
    name: str


class RecordingStopped(TypedDict):
    type: Literal["recordingStopped"]
    recording_id: str
    reason: str


class ConnectionFailed(TypedDict):
    type: Literal["connectionFailed"]
    stream: str


class MediaServerLost(TypedDict):
    type: Literal["mediaServerLost"]


class SessionClosed(TypedDict):
    type: Literal["sessionClosed"]


# The functional form because "from" is a keyword.
ChatMessage = TypedDict("ChatMessage", {"type": Literal["message"], "from": str, "payload": dict[str, Any]})


class MessagesDropped(TypedDict):
    """The participant's queue overflowed: `count` older messages were dropped before the next one."""

    type: Literal["messagesDropped"]
    count: int


class Resync(TypedDict):
    """Messages may have been missed (`reason`); re-read GET /sessions/{sid} and renegotiate."""

    type: Literal["resync"]
    reason: str


class Error(TypedDict):
    type: Literal["error"]
    request_id: str | None
    code: int
    message: str


Message = (
    SdpAnswer
    | IceCandidate
    | IceGatheringDone
    | ParticipantJoined
    | ParticipantLeft
    | StreamPublished
    | StreamMuted
    | StreamUnpublished
    | RecordingStarted
    | RecordingStopped
    | ConnectionFailed
    | MediaServerLost
    | SessionClosed
    | ChatMessage
    | MessagesDropped
    | Resync
    | Error
)


def sdp_answer(stream: str, sdp: str, request_id: str) -> SdpAnswer:
    return {"type": "sdpAnswer", "stream": stream, "sdp": sdp, "request_id": request_id}


def ice_candidate(stream: str, candidate: Mapping[str, Any]) -> IceCandidate:
    return {"type": "iceCandidate", "stream": stream, "candidate": candidate}


def ice_gathering_done(stream: str) -> IceGatheringDone:
    return {"type": "iceGatheringDone", "stream": stream}


def participant_joined(
    participant_id: str, display_name: str, role: str, metadata: dict[str, Any]
) -> ParticipantJoined:
    return {
        "type": "participantJoined",
        "participant_id": participant_id,
        "display_name": display_name,
        "role": role,
        "metadata": metadata,
    }


def participant_left(participant_id: str, reason: str) -> ParticipantLeft:
    return {"type": "participantLeft", "participant_id": participant_id, "reason": reason}


def stream_published(
    participant_id: str, name: str = "main", audio: bool = True, video: bool = True
) -> StreamPublished:
    return {"type": "streamPublished", "participant_id": participant_id, "name": name, "audio": audio, "video": video}


def stream_unpublished(participant_id: str, name: str = "main", reason: str = "unpublished") -> StreamUnpublished:
    return {"type": "streamUnpublished", "participant_id": participant_id, "name": name, "reason": reason}


def stream_muted(participant_id: str, name: str, audio: bool, video: bool) -> StreamMuted:
    return {"type": "streamMuted", "participant_id": participant_id, "name": name, "audio": audio, "video": video}


def recording_started(recording_id: str, participant_id: str, name: str) -> RecordingStarted:
    return {"type": "recordingStarted", "recording_id": recording_id, "participant_id": participant_id, "name": name}


def recording_stopped(recording_id: str, reason: str) -> RecordingStopped:
    """`reason`: stopped, unpublished, left, sessionClosed, mediaServerLost or error."""
    return {"type": "recordingStopped", "recording_id": recording_id, "reason": reason}


def connection_failed(stream: str) -> ConnectionFailed:
    return {"type": "connectionFailed", "stream": stream}


def media_server_lost() -> MediaServerLost:
    return {"type": "mediaServerLost"}


def session_closed() -> SessionClosed:
    return {"type": "sessionClosed"}


def chat_message(sender: str, payload: dict[str, Any]) -> ChatMessage:
    return {"type": "message", "from": sender, "payload": payload}


def error(request_id: str | None, code: int, message: str) -> Error:
    return {"type": "error", "request_id": request_id, "code": code, "message": message}


def messages_dropped(count: int) -> MessagesDropped:
    return {"type": "messagesDropped", "count": count}


# Why a `resync` was sent: the participant's queue was deleted by the broker (x-expires) while
# the participant stayed joined, so whatever was published meanwhile had nowhere to go.
RESYNC_QUEUE_EXPIRED = "queueExpired"


def resync(reason: str) -> Resync:
    return {"type": "resync", "reason": reason}
