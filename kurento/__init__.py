"""Python client for Kurento Media Server 7.x (JSON-RPC over WebSocket)."""

from kurento.client import ClientStats, KurentoClient
from kurento.exceptions import (
    AlreadyNegotiated,
    InvalidSession,
    KurentoError,
    KurentoUnavailable,
    ObjectNotFound,
    RequestNotSent,
)
from kurento.objects import (
    MediaElement,
    MediaObject,
    MediaPipeline,
    RecorderEndpoint,
    ServerManager,
    WebRtcEndpoint,
)
from kurento.pool import get_client
from kurento.transaction import NewRef, Transaction

__all__ = [
    "AlreadyNegotiated",
    "ClientStats",
    "InvalidSession",
    "KurentoClient",
    "KurentoError",
    "KurentoUnavailable",
    "MediaElement",
    "MediaObject",
    "MediaPipeline",
    "NewRef",
    "ObjectNotFound",
    "RecorderEndpoint",
    "RequestNotSent",
    "ServerManager",
    "Transaction",
    "WebRtcEndpoint",
    "get_client",
]
