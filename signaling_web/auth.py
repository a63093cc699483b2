"""Who is calling: an API key (operators' backends) or a participant's signed token.

A participant token binds one session and one participant and its role, and expires; it never
reads or acts for anyone else. The role rides in the signed token (a participant's role never
changes), so checking it costs no read. The rules of who may call which operation are in signaling_web.access;
the refusals below are domain errors, answered by signaling_web.errors.
"""

from __future__ import annotations

import functools
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from models import ParticipantRole
from models.errors import Forbidden, NotAModerator, Unauthorized
from settings import Settings

TOKEN_SALT = "signaling.participant"


class TokenRequired(Unauthorized):
    message = "Authorization: Bearer <participant token> is required."


class TokenExpired(Unauthorized):
    message = "The participant token has expired; join again."


class TokenNotValid(Unauthorized):
    message = "The participant token is not valid."


class ApiKeyRequired(Unauthorized):
    message = "A valid X-API-Key header is required."


class NotYourParticipant(Forbidden):
    message = "This token belongs to another participant."


class NotYourSession(Forbidden):
    message = "This token belongs to another session."


@dataclass(frozen=True)
class ParticipantPrincipal:
    session_id: str
    participant_id: str
    role: str = ParticipantRole.PUBLISHER  # a token issued before roles existed: a publisher's


def _settings() -> Settings:
    return current_app.extensions["signaling_settings"]


@functools.cache
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT)


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(_settings().secret_key)


ROLES = frozenset(role.value for role in ParticipantRole)


def issue_token(session_id: str, participant_id: str, role: str = ParticipantRole.PUBLISHER) -> str:
    return _serializer().dumps({"s": session_id, "p": participant_id, "r": role})


def token_expiry(issued_before: float) -> datetime:
    """When a token issued after `issued_before` (time.time()) expires at the earliest: itsdangerous
    signs whole seconds, and refuses a token once its second is TOKEN_TTL_S old."""
    return datetime.fromtimestamp(int(issued_before) + _settings().token_ttl_s, UTC)


def _claims(token: str, settings: Settings) -> Any:
    """The token's claims if its signature holds and its age is within the TTL. The age is judged
    with TOKEN_LEEWAY_S either side: the instance that issued it may have a clock a little ahead
    (itsdangerous alone refuses any negative age)."""
    claims, signed_at = _serializer_for(settings.secret_key).loads(token, return_timestamp=True)
    age = time.time() - signed_at.timestamp()
    if not -settings.token_leeway_s <= age <= settings.token_ttl_s + settings.token_leeway_s:
        raise SignatureExpired(f"token age {age:.0f} s", payload=claims, date_signed=signed_at)
    return claims


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _token() -> ParticipantPrincipal | type[Unauthorized] | None:
    """The Bearer token's participant, the refusal it earns, or None without one; verified once
    per request (the rate limit and the access check both ask)."""
    if "token_reading" in g:
        reading: ParticipantPrincipal | type[Unauthorized] | None = g.token_reading
        return reading
    token = _bearer()
    if token is None:
        reading = None
    else:
        try:
            claims = _claims(token, _settings())
        except SignatureExpired:
            reading = TokenExpired
        except BadSignature:
            reading = TokenNotValid
        else:
            valid = (
                isinstance(claims, dict)
                and isinstance(claims.get("s"), str)
                and isinstance(claims.get("p"), str)
                and claims.get("r", ParticipantRole.PUBLISHER) in ROLES
            )
            reading = (
                ParticipantPrincipal(claims["s"], claims["p"], claims.get("r", ParticipantRole.PUBLISHER))
                if valid
                else TokenNotValid
            )
    g.token_reading = reading
    return reading


def read_participant_token() -> ParticipantPrincipal | None:
    """The caller's participant identity, None if no Bearer token; 401 if it is not valid."""
    reading = _token()
    if isinstance(reading, type):
        raise reading()
    return reading


def verified_participant() -> ParticipantPrincipal | None:
    """The participant of a valid Bearer token, or None (no token, or one that does not verify);
    never refuses: for bookkeeping such as rate limits, not for access decisions."""
    reading = _token()
    return None if isinstance(reading, type) else reading


def has_api_key() -> bool:
    keys = _settings().api_keys
    given = request.headers.get("X-API-Key", "")
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500), and
    # a header may carry any byte.
    return bool(given) and any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def api_keys_configured() -> bool:
    return bool(_settings().api_keys)


def require_api_key() -> None:
    if not has_api_key():
        raise ApiKeyRequired()


def require_participant(session_id: str, participant_id: str) -> ParticipantPrincipal:
    principal = read_participant_token()
    if principal is None:
        raise TokenRequired()
    if principal.session_id != session_id or principal.participant_id != participant_id:
        raise NotYourParticipant()
    g.principal = principal
    return principal


def require_member(session_id: str) -> ParticipantPrincipal:
    principal = read_participant_token()
    if principal is None:
        raise TokenRequired()
    if principal.session_id != session_id:
        raise NotYourSession()
    g.principal = principal
    return principal


def current_principal() -> ParticipantPrincipal:
    """The participant a participant or member check admitted during this request."""
    principal: ParticipantPrincipal = g.principal
    return principal


def require_moderator(session_id: str) -> ParticipantPrincipal:
    """A participant of the session whose token says moderator (whether it is still joined takes a
    read: the operation checks it)."""
    principal = require_member(session_id)
    if principal.role != ParticipantRole.MODERATOR:
        raise NotAModerator()
    return principal


def require_self_or_moderator(session_id: str, participant_id: str) -> ParticipantPrincipal:
    """The participant the path names, or a moderator of its session."""
    principal = require_member(session_id)
    if principal.participant_id != participant_id and principal.role != ParticipantRole.MODERATOR:
        raise NotAModerator()
    return principal


def principal_if_any() -> ParticipantPrincipal | None:
    """The participant an access check admitted during this request; None for an API key."""
    principal: ParticipantPrincipal | None = g.get("principal")
    return principal
