"""Python client for Kurento Media Server 7.x (JSON-RPC over WebSocket)."""

from kurento.client import KurentoClient
from kurento.exceptions import (
    AlreadyNegotiated,
    InvalidSession,
    KurentoError,
    KurentoUnavailable,
    ObjectNotFound,
)
from kurento.objects import MediaElement, MediaObject, MediaPipeline, ServerManager, WebRtcEndpoint
from kurento.pool import get_client

__all__ = [
    "AlreadyNegotiated",
    "InvalidSession",
    "KurentoClient",
    "KurentoError",
    "KurentoUnavailable",
    "MediaElement",
    "MediaObject",
    "MediaPipeline",
    "ObjectNotFound",
    "ServerManager",
    "WebRtcEndpoint",
    "get_client",
]
