"""SignalingClient: the application backend's side of REST API v1, authenticated with an API key."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

from signaling_sdk._version import __version__
from signaling_sdk.models import (
    CreatedSession,
    MintedToken,
    Recording,
    RecordingProfile,
    Role,
    Session,
    SessionPage,
    SessionState,
    SessionSummary,
)
from signaling_sdk.transport import RetryPolicy, Transport

API_PREFIX = "/api/v1"


def _seg(value: str) -> str:
    """One path segment: an id never changes the route it goes into."""
    return urllib.parse.quote(value, safe="")


class SignalingClient:
    """A client of one deployment, e.g. `SignalingClient("https://signaling.example.com", api_key="...")`.

    `base_url` is the service's root (the API is under /api/v1). Every call raises ApiError (a
    subclass per status: NotFound, Conflict, ...) on a non-2xx answer and TransportError when no
    answer came. `timeout` bounds each attempt (connecting, and each wait for data); `retries`
    extra attempts follow a refused or timed-out connection, a 503 or a 429. Every POST sends an
    Idempotency-Key, generated per call unless passed: pass your own to make a call safe to repeat
    across your own restarts (the service answers a repeat with the first answer)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
    ) -> None:
        self._http = Transport(
            base_url.rstrip("/") + API_PREFIX,
            api_key,
            timeout=timeout,
            retry=RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s),
            user_agent=f"signaling-sdk-python/{__version__}",
        )

    # --- sessions -------------------------------------------------------------------------------
    def create_session(
        self,
        name: str | None = None,
        max_participants: int | None = None,
        *,
        max_video_send_bandwidth: int | None = None,
        min_video_send_bandwidth: int | None = None,
        max_video_recv_bandwidth: int | None = None,
        idempotency_key: str | None = None,
    ) -> CreatedSession:
        """`POST /sessions`: 201 with the session's shared join token. The bandwidth limits (kbps) are
        the session's defaults for what the media server sends to each subscriber (max/min) and
        receives from each publisher (max)."""
        body = _without_none(
            name=name,
            max_participants=max_participants,
            max_video_send_bandwidth=max_video_send_bandwidth,
            min_video_send_bandwidth=min_video_send_bandwidth,
            max_video_recv_bandwidth=max_video_recv_bandwidth,
        )
        return CreatedSession.from_json(
            self._http.request("POST", "/sessions", body=body, idempotency_key=idempotency_key)
        )

    def get_session(self, session_id: str) -> Session:
        """`GET /sessions/{sid}`: the session and its participants."""
        return Session.from_json(self._http.request("GET", f"/sessions/{_seg(session_id)}"))

    def list_sessions(
        self, state: SessionState | None = None, limit: int | None = None, cursor: str | None = None
    ) -> SessionPage:
        """`GET /sessions?state=&limit=&cursor=`: one page, newest first; pass its `next_cursor` for the next."""
        query = {"state": state, "limit": limit, "cursor": cursor}
        return SessionPage.from_json(self._http.request("GET", "/sessions", query=query))

    def iter_sessions(
        self, state: SessionState | None = None, page_size: int | None = None
    ) -> Iterator[SessionSummary]:
        """Every session (of `state`), newest first, fetching pages as the iteration goes."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(state=state, limit=page_size, cursor=cursor)
            yield from page.sessions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def close_session(self, session_id: str) -> None:
        """`DELETE /sessions/{sid}`: everyone gets sessionClosed; closing a closed session is no error."""
        self._http.request("DELETE", f"/sessions/{_seg(session_id)}")

    # --- join tokens ----------------------------------------------------------------------------
    def mint_token(
        self,
        session_id: str,
        *,
        role: Role | None = None,
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        ttl_s: int | None = None,
        max_video_send_bandwidth: int | None = None,
        min_video_send_bandwidth: int | None = None,
        max_video_recv_bandwidth: int | None = None,
        idempotency_key: str | None = None,
    ) -> MintedToken:
        """`POST /sessions/{sid}/tokens`: a single-use join token for one user (ttl 3600 s by default,
        at most 86400); its display_name and metadata win over what the joining frontend sends, and
        its bandwidth limits (kbps) over the session's, field by field."""
        body = _without_none(
            role=role,
            display_name=display_name,
            metadata=metadata,
            ttl_s=ttl_s,
            max_video_send_bandwidth=max_video_send_bandwidth,
            min_video_send_bandwidth=min_video_send_bandwidth,
            max_video_recv_bandwidth=max_video_recv_bandwidth,
        )
        answer = self._http.request(
            "POST", f"/sessions/{_seg(session_id)}/tokens", body=body, idempotency_key=idempotency_key
        )
        return MintedToken.from_json(answer)

    def rotate_join_token(self, session_id: str, *, idempotency_key: str | None = None) -> str:
        """`POST /sessions/{sid}/join-token`: the session's new shared join token; the old one is
        refused (403) from now on."""
        answer = self._http.request("POST", f"/sessions/{_seg(session_id)}/join-token", idempotency_key=idempotency_key)
        return str(answer["join_token"])

    # --- moderation and messages ----------------------------------------------------------------
    def remove_participant(self, session_id: str, participant_id: str) -> None:
        """`DELETE /sessions/{sid}/participants/{pid}`: everyone gets participantLeft with reason "removed".

        Retried when no answer came; if the first attempt had removed it, the retry's refusal
        (Conflict or NotFound) means it is gone all the same."""
        self._http.request("DELETE", f"/sessions/{_seg(session_id)}/participants/{_seg(participant_id)}")

    def send_message(
        self, session_id: str, payload: Any, to: str | None = None, *, idempotency_key: str | None = None
    ) -> None:
        """`POST /sessions/{sid}/messages`: to everyone, or to the participant `to`; `from` is "server"."""
        body = _without_none(payload=payload, to=to)
        self._http.request("POST", f"/sessions/{_seg(session_id)}/messages", body=body, idempotency_key=idempotency_key)

    # --- recordings -----------------------------------------------------------------------------
    def start_recording(
        self,
        session_id: str,
        participant_id: str,
        name: str | None = None,
        profile: RecordingProfile | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Recording:
        """`POST /sessions/{sid}/recordings`: records a publication (`name`, default "main") in `profile`
        (default webm); the answer's state is "starting"."""
        body = _without_none(participant_id=participant_id, name=name, profile=profile)
        answer = self._http.request(
            "POST", f"/sessions/{_seg(session_id)}/recordings", body=body, idempotency_key=idempotency_key
        )
        return Recording.from_json(answer)

    def list_recordings(self, session_id: str) -> list[Recording]:
        """`GET /sessions/{sid}/recordings`."""
        answer = self._http.request("GET", f"/sessions/{_seg(session_id)}/recordings")
        return [Recording.from_json(r) for r in answer.get("recordings", [])]

    def get_recording(self, session_id: str, recording_id: str) -> Recording:
        """`GET /sessions/{sid}/recordings/{rid}`."""
        return Recording.from_json(
            self._http.request("GET", f"/sessions/{_seg(session_id)}/recordings/{_seg(recording_id)}")
        )

    def stop_recording(self, session_id: str, recording_id: str, *, idempotency_key: str | None = None) -> None:
        """`POST /sessions/{sid}/recordings/{rid}/stop`: the state becomes "stopped" once the media server says so."""
        self._http.request(
            "POST",
            f"/sessions/{_seg(session_id)}/recordings/{_seg(recording_id)}/stop",
            idempotency_key=idempotency_key,
        )


def _without_none(**fields: Any) -> dict[str, Any]:
    """The body with only the fields given: an omitted field takes the service's default."""
    return {k: v for k, v in fields.items() if v is not None}
