"""The messages a participant receives, as the REST contract names them."""

from __future__ import annotations


def sdp_answer(stream: str, sdp: str, request_id: str) -> dict:
    return {"type": "sdpAnswer", "stream": stream, "sdp": sdp, "request_id": request_id}


def ice_candidate(stream: str, candidate: dict) -> dict:
    return {"type": "iceCandidate", "stream": stream, "candidate": candidate}


def ice_gathering_done(stream: str) -> dict:
    return {"type": "iceGatheringDone", "stream": stream}


def participant_joined(participant_id: str, display_name: str) -> dict:
    return {"type": "participantJoined", "participant_id": participant_id, "display_name": display_name}


def participant_left(participant_id: str, reason: str) -> dict:
    return {"type": "participantLeft", "participant_id": participant_id, "reason": reason}


def stream_published(participant_id: str) -> dict:
    return {"type": "streamPublished", "participant_id": participant_id}


def stream_unpublished(participant_id: str) -> dict:
    return {"type": "streamUnpublished", "participant_id": participant_id}


def connection_failed(stream: str) -> dict:
    return {"type": "connectionFailed", "stream": stream}


def media_server_lost() -> dict:
    return {"type": "mediaServerLost"}


def session_closed() -> dict:
    return {"type": "sessionClosed"}


def chat_message(sender: str, payload: dict) -> dict:
    return {"type": "message", "from": sender, "payload": payload}


def error(request_id: str | None, code: int, message: str) -> dict:
    return {"type": "error", "request_id": request_id, "code": code, "message": message}
