"""In-memory media objects: ids, type hierarchy, parent/child links, events per type, release cascade.

Ids follow KMS 7 (kurento-protocol.md 3.2): `<uuid>_kurento.MediaPipeline`, children
`<pipelineId>/<uuid>_kurento.<Type>`, and the singleton `manager_ServerManager`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

SERVER_MANAGER_ID = "manager_ServerManager"

# Ancestors of each concrete type, nearest first (describe.hierarchy without the "kurento." prefix).
_RTP = ["BaseRtpEndpoint", "SdpEndpoint", "SessionEndpoint", "Endpoint", "MediaElement", "MediaObject"]
_URI = ["UriEndpoint", "Endpoint", "MediaElement", "MediaObject"]
_HUB = ["Hub", "MediaObject"]
_FILTER = ["Filter", "MediaElement", "MediaObject"]
HIERARCHY: dict[str, list[str]] = {
    "ServerManager": ["MediaObject"],
    "MediaPipeline": ["MediaObject"],
    "WebRtcEndpoint": _RTP,
    "RtpEndpoint": _RTP,
    "PassThrough": ["MediaElement", "MediaObject"],
    "HubPort": ["MediaElement", "MediaObject"],
    "PlayerEndpoint": _URI,
    "RecorderEndpoint": _URI,
    "HttpPostEndpoint": ["HttpEndpoint", "SessionEndpoint", "Endpoint", "MediaElement", "MediaObject"],
    "Composite": _HUB,
    "Dispatcher": _HUB,
    "DispatcherOneToMany": _HUB,
    "AlphaBlending": _HUB,
    "Mixer": _HUB,
    "FaceOverlayFilter": _FILTER,
    "GStreamerFilter": _FILTER,
    "ImageOverlayFilter": _FILTER,
    "ZBarFilter": _FILTER,
}

# Events declared at each level of the kmd (7.x names only; the 6.x ones are rejected with 40106).
EVENTS_BY_LEVEL: dict[str, tuple[str, ...]] = {
    "MediaObject": ("Error",),
    "ServerManager": ("ObjectCreated", "ObjectDestroyed"),
    "MediaElement": (
        "ElementConnected",
        "ElementDisconnected",
        "MediaFlowOutStateChanged",
        "MediaFlowInStateChanged",
        "MediaTranscodingStateChanged",
    ),
    "SessionEndpoint": ("MediaSessionStarted", "MediaSessionTerminated"),
    "BaseRtpEndpoint": ("MediaStateChanged", "ConnectionStateChanged"),
    "WebRtcEndpoint": (
        "IceCandidateFound",
        "IceGatheringDone",
        "IceComponentStateChanged",
        "DtlsConnectionStateChange",
        "DataChannelOpened",
        "DataChannelClosed",
        "NewCandidatePairSelected",
    ),
    "UriEndpoint": ("UriEndpointStateChanged",),
    "PlayerEndpoint": ("EndOfStream",),
    "RecorderEndpoint": ("Recording", "Paused", "Stopped"),
    "ZBarFilter": ("CodeFound",),
}

# Plain properties with their defaults, per level; reachable with get<Prop>/set<Prop>.
PROPERTIES_BY_LEVEL: dict[str, dict[str, Any]] = {
    "MediaPipeline": {"latencyStats": False},
    "MediaElement": {"encoderBitrate": 0, "minEncoderBitrate": 0, "maxEncoderBitrate": 0},
    "SdpEndpoint": {"maxAudioRecvBandwidth": 0, "maxVideoRecvBandwidth": 0},
    "BaseRtpEndpoint": {
        "minVideoRecvBandwidth": 0,
        "minVideoSendBandwidth": 100,
        "maxVideoSendBandwidth": 500,
        "mtu": 1200,
    },
    "WebRtcEndpoint": {
        "networkInterfaces": "",
        "iceTcp": True,
        "stunServerAddress": "",
        "stunServerPort": 3478,
        "turnUrl": "",
        "externalIPv4": "",
        "externalIPv6": "",
    },
}
READ_ONLY_PROPERTIES = {"mediaPipeline", "parent", "id", "children", "creationTime"}


def type_chain(type_name: str) -> list[str]:
    """The type itself followed by its ancestors."""
    return [type_name, *HIERARCHY[type_name]]


def normalise_type(type_name: str) -> str | None:
    """Accept "X" and "kurento.X"; return the plain name or None if unknown."""
    plain = type_name[len("kurento.") :] if type_name.startswith("kurento.") else type_name
    if plain in HIERARCHY and plain != "ServerManager":
        return plain
    return None


# How an element's media reports an event: (event type, event fields).
Emit = Callable[[str, dict[str, Any]], None]


class EndpointMedia(Protocol):
    """What the server asks of a backend's media for one element (signaling.py, media.py)."""

    async def process_offer(self, offer: str) -> str: ...

    async def generate_offer(self) -> str: ...

    async def process_answer(self, answer: str) -> str: ...

    async def gather_candidates(self) -> None: ...

    async def add_ice_candidate(self, candidate: str, sdp_mid: str, sdp_mline_index: int) -> None: ...

    # A sink from another backend is ignored: there is no media to forward between them.
    def connect(self, sink: EndpointMedia, media_type: str | None) -> None: ...

    def disconnect(self, sink: EndpointMedia, media_type: str | None) -> None: ...

    async def release(self) -> None: ...


@dataclass(eq=False)
class MediaObject:
    id: str
    type: str
    parent: MediaObject | None
    pipeline: MediaObject | None
    constructor_params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    creation_time: int = field(default_factory=lambda: int(time.time()))
    send_tags_in_events: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    children: list[MediaObject] = field(default_factory=list)
    # (sink id, media type) pairs this element feeds; media type is AUDIO, VIDEO or DATA.
    sinks: set[tuple[str, str]] = field(default_factory=set)
    sources: set[tuple[str, str]] = field(default_factory=set)
    # State owned by the server for SdpEndpoints, and the backend's EndpointMedia if any.
    local_sdp: str | None = None
    remote_sdp: str | None = None
    offer_generated: bool = False
    answer_processed: bool = False
    gathering_started: bool = False
    # addIceCandidate calls received before the remote SDP, replayed to the backend after negotiation.
    pending_candidates: list[tuple[str, str, int]] = field(default_factory=list)
    # Every non-empty addIceCandidate in arrival order; only the test control reads it.
    remote_candidates: list[tuple[str, str, int]] = field(default_factory=list)
    media: EndpointMedia | None = None
    # A RecorderEndpoint's state machine and sink (kms_emulator.recorder.Recorder).
    recorder: Any = None
    released: bool = False

    def is_a(self, level: str) -> bool:
        return level in type_chain(self.type)

    def supports_event(self, event: str) -> bool:
        return any(event in EVENTS_BY_LEVEL.get(level, ()) for level in type_chain(self.type))

    def property_default(self, prop: str) -> tuple[bool, Any]:
        for level in type_chain(self.type):
            defaults = PROPERTIES_BY_LEVEL.get(level, {})
            if prop in defaults:
                return True, defaults[prop]
        return False, None

    def describe(self) -> dict[str, Any]:
        return {
            "hierarchy": [f"kurento.{t}" for t in HIERARCHY[self.type]],
            "qualifiedType": f"kurento.{self.type}",
            "type": self.type,
        }

    def descendants(self) -> list[MediaObject]:
        result: list[MediaObject] = []
        for child in self.children:
            result.append(child)
            result.extend(child.descendants())
        return result


class Registry:
    """All live media objects of the emulator process."""

    def __init__(self) -> None:
        self.server_manager = MediaObject(SERVER_MANAGER_ID, "ServerManager", None, None)
        self.objects: dict[str, MediaObject] = {SERVER_MANAGER_ID: self.server_manager}

    def get(self, object_id: str) -> MediaObject | None:
        return self.objects.get(object_id)

    def create(self, type_name: str, parent: MediaObject | None, constructor_params: dict[str, Any]) -> MediaObject:
        suffix = f"{uuid.uuid4()}_kurento.{type_name}"
        pipeline = None if parent is None else (parent.pipeline or parent)
        object_id = suffix if pipeline is None else f"{pipeline.id}/{suffix}"
        obj = MediaObject(object_id, type_name, parent, pipeline, dict(constructor_params))
        if parent is not None:
            parent.children.append(obj)
        self.objects[object_id] = obj
        return obj

    def release(self, obj: MediaObject) -> list[MediaObject]:
        """Remove obj and its descendants; return them, children first."""
        if obj is self.server_manager or obj.released:
            return []
        removed = [*reversed(obj.descendants()), obj]
        for item in removed:
            item.released = True
            self.objects.pop(item.id, None)
        if obj.parent is not None and obj in obj.parent.children:
            obj.parent.children.remove(obj)
        return removed

    def pipelines(self) -> list[MediaObject]:
        return [o for o in self.objects.values() if o.type == "MediaPipeline"]
