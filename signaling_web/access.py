"""Who may call an operation: one decorator per role, which both enforces and documents it.

A role checks the caller before the view body runs (below flask-smorest's `arguments`, so a
malformed request is still a 422 whoever sends it), states the operation's OpenAPI `security`,
and leaves the refusals its check can raise on the view for `openapi.errors`, which documents
them with the operation's own errors. Usage, with @errors above the role:

    @errors(blp, NO_SUCH_PARTICIPANT)
    @access.participant
    def delete(self, session_id, participant_id): ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from flask import g, request

from models import ParticipantRole
from signaling_web import admission, auth
from signaling_web.extensions import Blueprint
from signaling_web.openapi import (
    ACCESS_REFUSALS,
    ANYONE,
    AS_MEMBER_OR_OPERATOR,
    AS_OPERATOR,
    AS_OPERATOR_IF_CONFIGURED,
    AS_PARTICIPANT,
    NO_API_KEY,
    NO_CREDENTIALS,
    NO_OPERATOR_KEY,
    NO_TOKEN,
    NOT_A_MODERATOR,
    NOT_YOUR_SESSION,
    NOT_YOURS,
    Documented,
    Security,
    View,
)


def _path(name: str) -> str:
    return str((request.view_args or {})[name])


@dataclass(frozen=True)
class Role:
    """`check` raises a domain error (401, 403) unless the caller may go on; `security` and
    `refusals` say the same in the OpenAPI document."""

    check: Callable[[], object]
    security: Security
    refusals: tuple[Documented, ...]

    def __call__(self, view: View) -> View:
        check = self.check

        @functools.wraps(view)
        def enforced(*args: Any, **kwargs: Any) -> Any:
            check()
            return view(*args, **kwargs)

        setattr(enforced, ACCESS_REFUSALS, self.refusals)
        return cast(View, Blueprint.doc(security=self.security)(enforced))


def _participant() -> None:
    auth.require_participant(_path("session_id"), _path("participant_id"))


def _member() -> None:
    auth.require_member(_path("session_id"))


def _member_or_operator() -> None:
    if not auth.has_api_key():
        auth.require_member(_path("session_id"))


def _moderator_or_operator() -> None:
    if not auth.has_api_key():
        auth.require_moderator(_path("session_id"))


def _self_moderator_or_operator() -> None:
    if not auth.has_api_key():
        auth.require_self_or_moderator(_path("session_id"), _path("participant_id"))


def _operator() -> None:
    auth.require_api_key()


def _operator_if_configured() -> None:
    if auth.api_keys_configured():
        auth.require_api_key()


def may_moderate(session_id: str) -> bool:
    """Whether the caller's participant token is a `moderator` of this session, still joined (one
    read), who may then do what an API key does to it (recordings). Any other caller: no (and the
    API key is required)."""
    principal = auth.verified_participant()
    if principal is None or principal.session_id != session_id or principal.role != ParticipantRole.MODERATOR:
        return False
    admission.check_acting_participant(session_id, principal.participant_id)  # a moderator who left: 409
    g.principal = principal
    return True


def _operator_or_moderator() -> None:
    if not may_moderate(_path("session_id")):
        auth.require_api_key()


def _nobody_checked() -> None:
    return None


participant = Role(_participant, AS_PARTICIPANT, (NO_TOKEN, NOT_YOURS))
"""The participant the path names, by its token."""

member = Role(_member, AS_PARTICIPANT, (NO_TOKEN, NOT_YOUR_SESSION))
"""Any participant of the session the path names, by its token (auth.current_principal says who)."""

member_or_operator = Role(_member_or_operator, AS_MEMBER_OR_OPERATOR, (NO_CREDENTIALS, NOT_YOUR_SESSION))
"""An API key, or a participant of the session the path names."""

moderator_or_operator = Role(
    _moderator_or_operator, AS_MEMBER_OR_OPERATOR, (NO_CREDENTIALS, NOT_YOUR_SESSION, NOT_A_MODERATOR)
)
"""An API key, or a `moderator` of the session the path names (auth.principal_if_any says which)."""

self_moderator_or_operator = Role(
    _self_moderator_or_operator, AS_MEMBER_OR_OPERATOR, (NO_CREDENTIALS, NOT_YOUR_SESSION, NOT_A_MODERATOR)
)
"""An API key, the participant the path names, or a `moderator` of its session."""

operator = Role(_operator, AS_OPERATOR, (NO_OPERATOR_KEY,))
"""An API key, always: without SIGNALING_API_KEYS nobody holds one (an open deployment's sessions end
when empty, EMPTY_SESSION_TIMEOUT_S)."""

operator_if_configured = Role(_operator_if_configured, AS_OPERATOR_IF_CONFIGURED, (NO_API_KEY,))
"""An API key when SIGNALING_API_KEYS is set; anyone otherwise."""

recording_controller = Role(_operator_or_moderator, AS_MEMBER_OR_OPERATOR, (NO_OPERATOR_KEY,))
"""An API key, or a moderator of the session the path names (`may_moderate`, the hook for roles)."""

anyone = Role(_nobody_checked, ANYONE, ())
"""No credential: the operation checks a secret of its own (the join token)."""
