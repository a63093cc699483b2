"""Python SDK for the Kurento signaling service's backend API (REST API v1, with an API key).

from signaling_sdk import SignalingClient, verify_event

client = SignalingClient("https://signaling.example.com", api_key="...")
session = client.create_session(name="standup")
token = client.mint_token(session.session_id, display_name="alice", role="moderator")
"""

from signaling_sdk._version import __version__
from signaling_sdk.client import SignalingClient
from signaling_sdk.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    SignalingError,
    TransportError,
    Unauthorized,
    Unprocessable,
    WebhookSignatureError,
)
from signaling_sdk.models import (
    CreatedSession,
    MintedToken,
    Participant,
    Recording,
    Session,
    SessionPage,
    SessionSummary,
)
from signaling_sdk.webhooks import WebhookEvent, parse_event, signature, verify_event, verify_signature

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "CreatedSession",
    "Forbidden",
    "MintedToken",
    "NotFound",
    "Participant",
    "PayloadTooLarge",
    "RateLimited",
    "Recording",
    "ServiceUnavailable",
    "Session",
    "SessionPage",
    "SessionSummary",
    "SignalingClient",
    "SignalingError",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
    "WebhookEvent",
    "WebhookSignatureError",
    "__version__",
    "parse_event",
    "signature",
    "verify_event",
    "verify_signature",
]
