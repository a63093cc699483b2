"""The service's answers as dataclasses (REST API v1, both parts).

Fields the service may add later do not break parsing: each result keeps the answer as it came
in `raw`. Timestamps are timezone-aware datetimes (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SessionState = Literal["open", "media_lost", "closed"]
Role = Literal["publisher", "subscriber", "moderator"]
RecordingProfile = Literal["webm", "mp4", "webm-audio"]
RecordingState = Literal["starting", "recording", "stopped", "failed"]


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError(f"not an ISO 8601 time: {value!r}")
    return parsed


@dataclass(frozen=True)
class Participant:
    participant_id: str
    display_name: str
    publishing: bool
    state: str
    role: Role | None = None
    """None from a service that predates roles."""
    metadata: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Participant:
        return cls(
            participant_id=body["participant_id"],
            display_name=body.get("display_name", ""),
            publishing=bool(body.get("publishing", False)),
            state=body.get("state", ""),
            role=body.get("role"),
            metadata=body.get("metadata"),
            raw=body,
        )


@dataclass(frozen=True)
class CreatedSession:
    """The answer to creating a session: its shared join token goes to the frontends that join."""

    session_id: str
    join_token: str
    name: str
    state: SessionState
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CreatedSession:
        return cls(body["session_id"], body["join_token"], body.get("name", ""), body["state"], raw=body)


@dataclass(frozen=True)
class Session:
    session_id: str
    name: str
    state: SessionState
    participants: list[Participant]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Session:
        participants = [Participant.from_json(p) for p in body.get("participants", [])]
        return cls(body["session_id"], body.get("name", ""), body["state"], participants, raw=body)


@dataclass(frozen=True)
class SessionSummary:
    """One session of a listing."""

    session_id: str
    name: str
    state: SessionState
    participant_count: int
    created_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SessionSummary:
        return cls(
            session_id=body["session_id"],
            name=body.get("name", ""),
            state=body["state"],
            participant_count=int(body.get("participant_count", 0)),
            created_at=_required_time(body["created_at"]),
            raw=body,
        )


@dataclass(frozen=True)
class SessionPage:
    """One page of `GET /sessions`; `next_cursor` is None on the last page."""

    sessions: list[SessionSummary]
    next_cursor: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SessionPage:
        return cls([SessionSummary.from_json(s) for s in body.get("sessions", [])], body.get("next_cursor"))


@dataclass(frozen=True)
class MintedToken:
    """A single-use join token for one user: a second join with it is refused (409)."""

    join_token: str
    role: Role
    expires_at: datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MintedToken:
        return cls(body["join_token"], body["role"], _required_time(body["expires_at"]), raw=body)


@dataclass(frozen=True)
class Recording:
    recording_id: str
    state: RecordingState
    participant_id: str
    name: str
    profile: RecordingProfile
    uri: str
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    reason: str | None = None
    """Why it stopped: stopped, unpublished, left, sessionClosed, mediaServerLost or error."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Recording:
        return cls(
            recording_id=body["recording_id"],
            state=body["state"],
            participant_id=body["participant_id"],
            name=body.get("name", "main"),
            profile=body.get("profile", "webm"),
            uri=body.get("uri", ""),
            started_at=_time(body.get("started_at")),
            stopped_at=_time(body.get("stopped_at")),
            reason=body.get("reason"),
            raw=body,
        )
