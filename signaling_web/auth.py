"""Who is calling: an API key (operators' backends) or a participant's signed token.

A participant token binds one session and one participant and expires; it never reads or
acts for anyone else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import current_app, g, request
from flask_smorest import abort
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from settings import Settings

TOKEN_SALT = "signaling.participant"


@dataclass(frozen=True)
class ParticipantPrincipal:
    session_id: str
    participant_id: str


def _settings() -> Settings:
    return current_app.extensions["signaling_settings"]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_settings().secret_key, salt=TOKEN_SALT)


def issue_token(session_id: str, participant_id: str) -> str:
    return _serializer().dumps({"s": session_id, "p": participant_id})


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def read_participant_token() -> ParticipantPrincipal | None:
    """The caller's participant identity, None if no Bearer token; 401 if it is not valid."""
    token = _bearer()
    if token is None:
        return None
    try:
        claims = _serializer().loads(token, max_age=_settings().token_ttl_s)
    except SignatureExpired:
        abort(401, message="The participant token has expired; join again.")
    except BadSignature:
        abort(401, message="The participant token is not valid.")
    return ParticipantPrincipal(claims["s"], claims["p"])


def verified_participant() -> ParticipantPrincipal | None:
    """The participant of a valid Bearer token, or None (no token, or one that does not verify);
    never refuses: for bookkeeping such as rate limits, not for access decisions."""
    token = _bearer()
    if token is None:
        return None
    try:
        claims = _serializer().loads(token, max_age=_settings().token_ttl_s)
    except BadSignature:  # SignatureExpired included
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("p"), str):
        return None
    return ParticipantPrincipal(str(claims.get("s")), claims["p"])


def has_api_key() -> bool:
    keys = _settings().api_keys
    given = request.headers.get("X-API-Key", "")
    return bool(given) and any(hmac.compare_digest(given, key) for key in keys)


def require_api_key_if_configured() -> None:
    if _settings().api_keys and not has_api_key():
        abort(401, message="A valid X-API-Key header is required.")


def api_keys_configured() -> bool:
    return bool(_settings().api_keys)


def require_api_key() -> None:
    if not has_api_key():
        abort(401, message="A valid X-API-Key header is required.")


def require_participant(session_id: str, participant_id: str) -> ParticipantPrincipal:
    principal = read_participant_token()
    if principal is None:
        abort(401, message="Authorization: Bearer <participant token> is required.")
    if principal.session_id != session_id or principal.participant_id != participant_id:
        abort(403, message="This token belongs to another participant.")
    g.principal = principal
    return principal


def require_member(session_id: str) -> ParticipantPrincipal:
    principal = read_participant_token()
    if principal is None:
        abort(401, message="Authorization: Bearer <participant token> is required.")
    if principal.session_id != session_id:
        abort(403, message="This token belongs to another session.")
    g.principal = principal
    return principal


def join_token_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
