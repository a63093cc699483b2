"""Join tokens, for the application's backend: minted single-use tokens with a role, and the
rotation of a session's shared token."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from models.session import BANDWIDTH_FIELDS
from signaling_web import access, admission
from signaling_web.extensions import Blueprint
from signaling_web.join_tokens.schemas import MintedTokenSchema, MintTokenSchema, RotatedJoinTokenSchema
from signaling_web.openapi import EXAMPLES, INVALID, NO_SUCH_SESSION, SESSION_IS_CLOSED, errors

blp = Blueprint(
    "join_tokens",
    __name__,
    url_prefix="/api/v1/sessions/<session_id>",
    description="Join tokens: minted ones with a role, and rotating the shared one (API key)",
)


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.arguments(MintTokenSchema, example=EXAMPLES["mint_token"])
    @blp.response(201, MintedTokenSchema, example=EXAMPLES["token_minted"])
    @errors(blp, INVALID, NO_SUCH_SESSION, SESSION_IS_CLOSED, post=True)
    @access.operator
    def post(self, args: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Mint a single-use join token with a role (and the participant's name and metadata)"""
        bandwidth = {field: args[field] for field in BANDWIDTH_FIELDS}
        token, grant = admission.mint_join_token(
            session_id, args["role"], args["display_name"], args["metadata"], args["ttl_s"], **bandwidth
        )
        return {"join_token": token, "role": grant.role, "expires_at": grant.expires_at}


@blp.route("/join-token")
class SharedJoinToken(MethodView):
    @blp.response(200, RotatedJoinTokenSchema, example=EXAMPLES["join_token_rotated"])
    @errors(blp, NO_SUCH_SESSION, SESSION_IS_CLOSED, post=True)
    @access.operator
    def post(self, session_id: str) -> dict[str, Any]:
        """Rotate the session's shared join token: the old one is refused from now on"""
        return {"join_token": admission.rotate_join_token(session_id)}
