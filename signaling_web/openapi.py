"""What the OpenAPI document says beyond the schemas: who may call, which errors, examples.

Every error an operation can return is documented on it in the error shape, with an example
whose message is the one the service sends (taken from the domain error that sends it where
one does). Who may call is declared by the operation's access role (signaling_web.access),
which also hands its refusals to `errors`. Errors raised around every route rather than in
it come from one place each: the rate limit (429) and an unreachable database or broker (503)
on every /api/v1/sessions route, and on every POST the body checks (400 invalid JSON or
Idempotency-Key, 413 over MAX_BODY_BYTES), a repeat of a key still being processed (409) and a
key reused with another body (422).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask_smorest import Api, Blueprint
from werkzeug.http import HTTP_STATUS_CODES

from models.errors import (
    NotAModerator,
    NotPublishing,
    ParticipantLeft,
    ParticipantNotFound,
    RecordingNotFound,
    SessionClosed,
    SessionNotFound,
)
from signaling_web.auth import ApiKeyRequired, NotYourParticipant, NotYourSession, TokenRequired

View = TypeVar("View", bound=Callable[..., Any])

ALICE_ID = "0f8e7d6c5b4a39281706f5e4d3c2b1a0"  # ALICE of the examples below

# --- security --------------------------------------------------------------------------------
PARTICIPANT_TOKEN = "participantToken"
API_KEY = "apiKey"
SECURITY_SCHEMES = {
    PARTICIPANT_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "The `token` a join answered with. It binds one session, one participant and its role, "
        "and expires after TOKEN_TTL_S (`token_expires_at`). Once its participant has left or was removed, it "
        "is refused (409) everywhere but that participant's poll, which still drains what is queued.",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of SIGNALING_API_KEYS, for operators' backends. Needed to mint join tokens and "
        "rotate the shared one, to create sessions when keys are configured, and (or a moderator's token) to "
        "close sessions and remove participants.",
    },
}
Security = list[dict[str, list[str]]]
AS_PARTICIPANT: Security = [{PARTICIPANT_TOKEN: []}]
AS_MEMBER_OR_OPERATOR: Security = [{API_KEY: []}, {PARTICIPANT_TOKEN: []}]
# `{}`: no credential at all is accepted too (an open deployment, SIGNALING_API_KEYS unset).
AS_OPERATOR_IF_CONFIGURED: Security = [{API_KEY: []}, {}]
AS_OPERATOR: Security = [{API_KEY: []}]
ANYONE: Security = []

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Any unique string (1 to 255 characters). A repeat of the same request with the same key "
    "returns the first response and does nothing twice, on any web instance.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "example": "3f1c9a0e-0b7d-4c55-9d0e-6f4f0f9b2c11",
}

# --- errors ----------------------------------------------------------------------------------
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
}

INVALID_BODY = (
    400,
    "The body is not valid JSON (nor too deep, nor with NaN), or Idempotency-Key is not 1 to 255 characters.",
    "Idempotency-Key must be 1 to 255 characters.",
)
IN_PROGRESS = (409, "A request with this Idempotency-Key is still being processed.")
KEY_REUSED = (
    422,
    "This Idempotency-Key was already used for a request with a different body.",
    "This Idempotency-Key was already used for a request with a different body; send a new request with a new key.",
)
TOO_LARGE = (413, "The body is larger than MAX_BODY_BYTES.", "The data value transmitted exceeds the capacity limit.")
RATE_LIMITED = (
    429,
    "Too many requests from this caller (RATE_LIMIT_PER_S, RATE_LIMIT_BURST); see Retry-After.",
    "Too many requests; slow down.",
)
UNAVAILABLE = (
    503,
    "The database or the broker is unreachable for a moment; retry (same Idempotency-Key) after Retry-After.",
    "The service is temporarily unavailable; retry shortly.",
)
# The refusals of the access roles (signaling_web.access).
NO_TOKEN = (401, "No valid participant token (missing, not valid, or expired).", TokenRequired.message)
NOT_YOURS = (403, "The token belongs to another participant.", NotYourParticipant.message)
NOT_YOUR_SESSION = (403, "The token belongs to another session.", NotYourSession.message)
NOT_A_MODERATOR = (
    403,
    "The token is neither a moderator's of this session nor (where the path names one) that participant's own.",
    NotAModerator.message,
)
NO_API_KEY = (
    401,
    "API keys are configured (SIGNALING_API_KEYS) and no valid X-API-Key was given.",
    ApiKeyRequired.message,
)
NO_CREDENTIALS = (
    401,
    "Neither a valid X-API-Key nor a valid participant token of this session.",
    TokenRequired.message,
)
NO_OPERATOR_KEY = (
    401,
    "No valid X-API-Key (without SIGNALING_API_KEYS configured, nobody has one).",
    ApiKeyRequired.message,
)
NO_SUCH_SESSION = (404, SessionNotFound.message)
NO_SUCH_PARTICIPANT = (404, "No such session or participant.", ParticipantNotFound.message)
HAS_LEFT = (
    409,
    "The participant has left (or was removed), or the session is closed: its token works only for its poll now.",
    ParticipantLeft.message,
)
SESSION_IS_CLOSED = (409, "The session is closed.", SessionClosed.message)
NO_SUCH_RECORDING = (404, "No such session or recording.", RecordingNotFound.message)
NOT_PUBLISHING = (
    409,
    "The participant is not publishing that publication (or has left), or the session is closed.",
    NotPublishing(ALICE_ID, "main").message,
)
INVALID = (422, "A field is missing or invalid; `errors` says which.", "The request is invalid; see errors.")

# Around every route under /api/v1/sessions, and in addition around every POST.
EVERY_ROUTE = (RATE_LIMITED, UNAVAILABLE)
EVERY_POST = (INVALID_BODY, IN_PROGRESS, KEY_REUSED, TOO_LARGE)

Documented = tuple  # (status, description) or (status, description, the message of the example)

INVALID_EXAMPLE_ERRORS = {"json": {"sdp": ["SDP must start with v=0."]}}


def error_example(status: int, message: str, errors: dict | None = None) -> dict:
    """A body in the shape every error has (signaling_web.errors.error_body)."""
    return {"code": status, "status": HTTP_STATUS_CODES[status], "message": message, "errors": errors or {}}


# Set on a view by its access role (signaling_web.access): the errors its check can answer.
ACCESS_REFUSALS = "access_refusals"


def _by_status(documented: tuple[Documented, ...]) -> dict[int, list[tuple[str, str]]]:
    by_status: dict[int, list[tuple[str, str]]] = {}
    for item in documented:
        status, description, message = (*item, item[1]) if len(item) == 2 else item
        reasons = by_status.setdefault(status, [])
        if description not in [d for d, _m in reasons]:
            reasons.append((description, message))
    return by_status


def errors(blp: Blueprint, *documented: Documented, post: bool = False) -> Callable[[View], View]:
    """Documents each error of an operation once per status: the reasons joined, the first one's
    message as the example. The refusals of the operation's access role come first; `post` adds
    the errors every POST can get and documents its Idempotency-Key header. An operation with
    arguments lists INVALID itself (its 422 then also names a reused Idempotency-Key).

    Goes above the access role, which must be there: no operation leaves who may call it unsaid.
    """

    def decorate(view: View) -> View:
        refusals = getattr(view, ACCESS_REFUSALS, None)
        if refusals is None:
            raise TypeError(f"{view.__qualname__}: put an access role (signaling_web.access) below @errors")
        by_status = _by_status((*refusals, *documented, *EVERY_ROUTE, *(EVERY_POST if post else ())))
        if post:
            view = blp.doc(parameters=[IDEMPOTENCY_KEY])(view)
        for status, reasons in sorted(by_status.items()):
            message = reasons[0][1]
            view = blp.alt_response(
                status,
                schema="Error",
                description=" Or: ".join(d for d, _m in reasons),
                example=error_example(status, message, INVALID_EXAMPLE_ERRORS if message == INVALID[2] else None),
                headers=RETRY_AFTER if status in (429, 503) else None,
            )(view)
        return view

    return decorate


def init_openapi(api: Api) -> None:
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)


# The examples of the standard responses flask-smorest adds by reference (422 of every
# operation with arguments, and `default` for anything unforeseen, such as 500).
COMPONENT_EXAMPLES = {
    "UNPROCESSABLE_ENTITY": error_example(422, INVALID[2], INVALID_EXAMPLE_ERRORS),
    "DEFAULT_ERROR": error_example(500, "Internal error; it has been logged."),
}

# --- request and response examples -------------------------------------------------------------
SESSION_ID = "6a1f0c2e9b7d4e5fa3c8d1b2e4f60789"
ALICE = ALICE_ID
BOB = "9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e"
JOIN_TOKEN = "kX3u9V2mQ7rT1yZ8bN4cL6pD0sF5gH2j"
TOKEN = (
    "eyJzIjoiNmExZjBjMmU5YjdkNGU1ZmEzYzhkMWIyZTRmNjA3ODkiLCJwIjoiMGY4ZTdkNmM1YjRhMzkyODE3MDZmNWU0ZDNjMmIx"
    "YTAifQ.Z1x2Yw.3q9s"
)
REQUEST_ID = "c0ffee4a5b6c7d8e9f00112233445566"
SDP_OFFER = (
    "v=0\r\no=- 2127816918632978501 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:ljDq\r\n"
    "a=ice-pwd:uLkTtqpBRKT3c4tbyn6G28K4\r\na=ice-options:trickle\r\na=fingerprint:sha-256 "
    "84:26:E8:71:94:E9:D9:89:E7:0E:C4:72:DF:66:C6:31:D3:63:1F:F5:07:0F:65:96:CA:40:D7:E5:15:41:37:81\r\n"
    "a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
)
SDP_ANSWER = SDP_OFFER.replace("a=setup:actpass", "a=setup:active").replace("a=sendonly", "a=recvonly")
CANDIDATE: dict[str, Any] = {
    "candidate": "candidate:596202772 1 udp 2122194687 192.0.2.2 50720 typ host generation 0",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}
REMOTE_CANDIDATE = {**CANDIDATE, "candidate": CANDIDATE["candidate"].replace("192.0.2.2 50720", "198.51.100.7 40012")}
MINTED_JOIN_TOKEN = "jt.Qm9iJ3MgdG9rZW4gZm9yIHRoZSBzdGFuZC11cA"
METADATA = {"user_id": "u-1234", "avatar": "https://example.com/avatars/bob.png"}
PARTICIPANTS = [
    {
        "participant_id": ALICE,
        "display_name": "Alice",
        "publishing": True,
        "state": "joined",
        "role": "moderator",
        "metadata": {"user_id": "u-0042"},
    },
    {
        "participant_id": BOB,
        "display_name": "Bob",
        "publishing": False,
        "state": "joined",
        "role": "publisher",
        "metadata": METADATA,
    },
]

ICE_SERVERS = [
    {"urls": ["stun:stun.example.org:3478"]},
    {
        "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
        "username": f"1767312000:{BOB}",
        "credential": "b7q6thdoVGuaFQmO1LmH6xfmmIs=",  # TURN_SECRET "example-secret"
    },
]

ICE_SERVERS = [
    {"urls": ["stun:stun.example.org:3478"]},
    {
        "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
        "username": f"1767312000:{BOB}",
        "credential": "b7q6thdoVGuaFQmO1LmH6xfmmIs=",  # TURN_SECRET "example-secret"
    },
]

RECORDING_ID = "b1a0c2d3e4f5061728394a5b6c7d8e9f"
RECORDING_URI = f"file:///var/lib/recordings/{SESSION_ID}/{RECORDING_ID}.webm"
RECORDING = {
    "recording_id": RECORDING_ID,
    "state": "recording",
    "participant_id": ALICE,
    "name": "main",
    "profile": "webm",
    "uri": RECORDING_URI,
    "started_at": "2026-01-01T09:06:00.000+00:00",
    "stopped_at": None,
    "reason": None,
}

EXAMPLES = {
    "create_session": {"name": "Daily stand-up", "max_participants": 8, "max_video_send_bandwidth": 1500},
    "session_created": {"session_id": SESSION_ID, "join_token": JOIN_TOKEN, "name": "Daily stand-up", "state": "open"},
    "session": {"session_id": SESSION_ID, "name": "Daily stand-up", "state": "open", "participants": PARTICIPANTS},
    "join": {"display_name": "Bob", "join_token": JOIN_TOKEN, "metadata": METADATA},
    "joined": {
        "participant_id": BOB,
        "token": TOKEN,
        "role": "publisher",
        "token_expires_at": "2025-06-02T09:30:00+00:00",
        "participants": PARTICIPANTS,
        "ice_servers": ICE_SERVERS,
    },
    "mint_token": {
        "role": "subscriber",
        "display_name": "Carol",
        "metadata": {"user_id": "u-7"},
        "ttl_s": 600,
        "max_video_send_bandwidth": 600,
    },
    "token_minted": {"join_token": MINTED_JOIN_TOKEN, "role": "subscriber", "expires_at": "2025-06-01T09:40:00+00:00"},
    "join_token_rotated": {"join_token": "Zq81LmW0cXv3TnB7yR2kD5hF9sA4eJ6u"},
    "rejoined": {"ice_servers": ICE_SERVERS},
    "session_list": {
        "sessions": [
            {
                "session_id": SESSION_ID,
                "name": "Daily stand-up",
                "state": "open",
                "participant_count": 2,
                "created_at": "2026-01-01T09:00:00.000+00:00",
            }
        ],
        "next_cursor": "MTc2NzI1ODAwMDAwMC42YTFmMGMyZTliN2Q0ZTVmYTNjOGQxYjJlNGY2MDc4OQ",
    },
    "accepted": {},
    "mute": {"video": True},
    "offer": {"stream": "publish", "sdp": SDP_OFFER},
    "offer_accepted": {"request_id": REQUEST_ID},
    "candidates": {"stream": ALICE, "candidates": [CANDIDATE]},
    "polled": {
        "messages": [
            {"seq": 41, "type": "sdpAnswer", "stream": "publish", "sdp": SDP_ANSWER, "request_id": REQUEST_ID},
            {"seq": 42, "type": "iceCandidate", "stream": "publish", "candidate": REMOTE_CANDIDATE},
            {
                "seq": 43,
                "type": "participantJoined",
                "participant_id": BOB,
                "display_name": "Bob",
                "role": "publisher",
                "metadata": METADATA,
            },
            {"seq": 44, "type": "message", "from": BOB, "payload": {"text": "hello"}},
            {"seq": 45, "type": "message", "from": "server", "payload": {"notice": "recording starts"}},
            {
                "seq": 46,
                "type": "streamPublished",
                "participant_id": BOB,
                "name": "screen",
                "audio": False,
                "video": True,
            },
            {"seq": 47, "type": "streamMuted", "participant_id": BOB, "name": "main", "audio": True, "video": False},
            {"seq": 48, "type": "streamUnpublished", "participant_id": BOB, "name": "screen", "reason": "unpublished"},
            {"seq": 49, "type": "participantLeft", "participant_id": BOB, "reason": "removed"},
        ],
        "last_seq": 49,
    },
    "send_message": {"payload": {"text": "hello"}, "to": None},
    "record": {"participant_id": ALICE, "name": "main", "profile": "webm"},
    "recording_created": {
        "recording_id": RECORDING_ID,
        "state": "starting",
        "participant_id": ALICE,
        "name": "main",
        "profile": "webm",
        "uri": RECORDING_URI,
    },
    "recording": RECORDING,
    "recording_list": {
        "recordings": [
            {
                **RECORDING,
                "recording_id": "5e4d3c2b1a0f9e8d7c6b5a4938271605",
                "uri": RECORDING_URI.replace(RECORDING_ID, "5e4d3c2b1a0f9e8d7c6b5a4938271605"),
                "state": "stopped",
                "stopped_at": "2026-01-01T09:05:00.000+00:00",
                "reason": "stopped",
            },
            RECORDING,
        ]
    },
}
