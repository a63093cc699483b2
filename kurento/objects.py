"""Typed proxies for KMS media objects.

A proxy is just ``(client, id)``: creating one costs nothing and holds no server state, so proxies
can be rebuilt from stored ids in any process. Method names are snake_case; the wire names are
Kurento's camelCase operations (kurento-protocol.md §4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kurento import jsonrpc

if TYPE_CHECKING:
    from kurento.client import KurentoClient

SERVER_MANAGER_ID = "manager_ServerManager"
MEDIA_TYPES = ("AUDIO", "VIDEO", "DATA")


class MediaObject:
    """Any KMS object: invoke operations, subscribe to events, release."""

    qualified_type = "kurento.MediaObject"

    def __init__(self, client: KurentoClient, object_id: str) -> None:
        self.client = client
        self.id = object_id

    def invoke(self, operation: str, **params: Any) -> Any:
        """Call ``operation`` (camelCase, e.g. ``getName``) and return ``result.value``.

        Keyword names may be snake_case; proxies passed as values are sent as their ids.
        """
        request: dict[str, Any] = {"object": self.id, "operation": operation}
        if params:
            request["operationParams"] = {jsonrpc.to_camel(k): _wire_value(v) for k, v in params.items()}
        return self.client.request("invoke", request).get("value")

    def release(self) -> None:
        """Release the object and its children; succeeds even if it is already gone."""
        self.client.request("release", {"object": self.id})

    def subscribe(self, event_type: str, callback: Callable[[dict[str, Any]], None]) -> str:
        """Route ``event_type`` events to ``callback(data)`` on the dispatcher thread; returns the subscription id."""
        return self.client.subscribe(self.id, event_type, callback)

    def subscribe_many(self, callbacks: dict[str, Callable[[dict[str, Any]], None]]) -> dict[str, str]:
        """Several event types in one round trip; {event type: subscription id}."""
        return self.client.subscribe_many(self.id, callbacks)

    def unsubscribe(self, subscription_id: str) -> None:
        self.client.unsubscribe(self.id, subscription_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MediaObject) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class MediaElement(MediaObject):
    qualified_type = "kurento.MediaElement"

    def connect(self, sink: MediaElement, media_type: str | None = None) -> None:
        """Send this element's media to ``sink``; all media types when ``media_type`` is None."""
        self.invoke("connect", **_connection_params(sink, media_type))

    def disconnect(self, sink: MediaElement, media_type: str | None = None) -> None:
        self.invoke("disconnect", **_connection_params(sink, media_type))


class WebRtcEndpoint(MediaElement):
    qualified_type = "kurento.WebRtcEndpoint"

    def process_offer(self, sdp: str) -> str:
        """Return the SDP answer; AlreadyNegotiated on a second call."""
        return str(self.invoke("processOffer", offer=sdp))

    def gather_candidates(self) -> None:
        """Start ICE gathering; candidates arrive as IceCandidateFound events."""
        self.invoke("gatherCandidates")

    def add_ice_candidate(self, candidate: str, sdp_mid: str, sdp_mline_index: int) -> None:
        self.invoke("addIceCandidate", candidate=jsonrpc.ice_candidate(candidate, sdp_mid, sdp_mline_index))

    def add_ice_candidates(self, candidates: list[tuple[str, str, int]]) -> None:
        """addIceCandidate for each (candidate, sdpMid, sdpMLineIndex), all in one round trip.

        Raises the first error after every request was answered.
        """
        calls = [
            (
                "invoke",
                {
                    "object": self.id,
                    "operation": "addIceCandidate",
                    "operationParams": {"candidate": jsonrpc.ice_candidate(c, mid, index)},
                },
            )
            for c, mid, index in candidates
        ]
        failure = next((r for r in self.client.request_many(calls) if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    def get_local_session_descriptor(self) -> str:
        return str(self.invoke("getLocalSessionDescriptor"))

    def get_remote_session_descriptor(self) -> str:
        return str(self.invoke("getRemoteSessionDescriptor"))


# RecorderEndpoint's mediaProfile values (elements.kmd MediaProfileSpecType).
MEDIA_PROFILES = (
    "WEBM",
    "MKV",
    "MP4",
    "WEBM_VIDEO_ONLY",
    "WEBM_AUDIO_ONLY",
    "MKV_VIDEO_ONLY",
    "MKV_AUDIO_ONLY",
    "MP4_VIDEO_ONLY",
    "MP4_AUDIO_ONLY",
    "JPEG_VIDEO_ONLY",
    "KURENTO_SPLIT_RECORDER",
    "FLV",
)
# UriEndpoint.getState values (UriEndpointState).
URI_ENDPOINT_STATES = ("STOP", "START", "PAUSE")


class RecorderEndpoint(MediaElement):
    """Stores the media connected to it at its `uri` (file://, http(s)://) in a `mediaProfile` container.

    Events: `Recording` (media is being written, after `record`), `Paused`, `Stopped` (everything is
    written), `UriEndpointStateChanged {state}`, and `Error` from any MediaObject.
    """

    qualified_type = "kurento.RecorderEndpoint"

    def record(self) -> None:
        """Start (or resume) writing; `Recording` follows once media arrives."""
        self.invoke("record")

    def pause(self) -> None:
        self.invoke("pause")

    def stop(self) -> None:
        """Stop writing; the file may still be being finalised when this returns (`Stopped` says when)."""
        self.invoke("stop")

    def stop_and_wait(self) -> None:
        """Stop and return only once everything is written (`Stopped` has fired)."""
        self.invoke("stopAndWait")

    def get_uri(self) -> str:
        return str(self.invoke("getUri"))

    def get_state(self) -> str:
        """STOP, START or PAUSE (UriEndpointState)."""
        return str(self.invoke("getState"))


class MediaPipeline(MediaObject):
    qualified_type = "kurento.MediaPipeline"

    def create_webrtc_endpoint(self, **ctor_params: Any) -> WebRtcEndpoint:
        """Create a WebRtcEndpoint; ``ctor_params`` e.g. ``recvonly=True`` (snake_case is converted)."""
        endpoint = self.create_element("WebRtcEndpoint", **ctor_params)
        assert isinstance(endpoint, WebRtcEndpoint)
        return endpoint

    def create_recorder_endpoint(
        self, uri: str, media_profile: str = "WEBM", stop_on_end_of_stream: bool = False
    ) -> RecorderEndpoint:
        """Create a RecorderEndpoint writing to `uri` (checked here: one of MEDIA_PROFILES)."""
        check_media_profile(media_profile)
        recorder = self.create_element(
            "RecorderEndpoint", uri=uri, media_profile=media_profile, stop_on_end_of_stream=stop_on_end_of_stream
        )
        assert isinstance(recorder, RecorderEndpoint)
        return recorder

    def create_element(self, type_name: str, **ctor_params: Any) -> MediaObject:
        """Create any element type in this pipeline; the proxy class follows ``type_name``."""
        params = {jsonrpc.to_camel(k): _wire_value(v) for k, v in ctor_params.items()}
        params["mediaPipeline"] = self.id
        result = self.client.request("create", {"type": type_name, "constructorParams": params})
        return class_for_type(type_name)(self.client, result["value"])


class ServerManager(MediaObject):
    """The KMS singleton ``manager_ServerManager``."""

    qualified_type = "kurento.ServerManager"

    def get_info(self) -> dict[str, Any]:
        return dict(self.invoke("getInfo"))

    def get_used_memory(self) -> int:
        """Resident memory of KMS in KiB."""
        return int(self.invoke("getUsedMemory"))

    def get_pipelines(self) -> list[str]:
        return list(self.invoke("getPipelines"))

    def get_sessions(self) -> list[str]:
        # Real KMS pads this list with empty strings (kurento-protocol.md §8.9); they mean nothing.
        return [session for session in self.invoke("getSessions") if session]

    def get_cpu_count(self) -> int:
        return int(self.invoke("getCpuCount"))

    def get_used_cpu(self, interval_ms: int) -> float:
        """CPU use in percent, measured by KMS over ``interval_ms`` (the call takes that long)."""
        return float(self.invoke("getUsedCpu", interval=interval_ms))


PROXY_CLASSES: dict[str, type[MediaObject]] = {
    cls.qualified_type: cls
    for cls in (MediaObject, MediaElement, WebRtcEndpoint, RecorderEndpoint, MediaPipeline, ServerManager)
}


def check_media_profile(media_profile: str) -> None:
    if media_profile not in MEDIA_PROFILES:
        raise ValueError(f"'media_profile' must be in {list(MEDIA_PROFILES)} (got {media_profile!r})")


def class_for_type(type_name: str) -> type[MediaObject]:
    """Proxy class for ``WebRtcEndpoint`` or ``kurento.WebRtcEndpoint``; MediaObject when unknown."""
    qualified = type_name if "." in type_name else f"kurento.{type_name}"
    return PROXY_CLASSES.get(qualified, MediaObject)


def class_for_description(description: dict[str, Any]) -> type[MediaObject]:
    """Most specific proxy class for a ``describe`` result: its type, else its nearest known ancestor."""
    candidates = [description.get("qualifiedType"), description.get("type"), *description.get("hierarchy", [])]
    for name in candidates:
        if isinstance(name, str) and class_for_type(name) is not MediaObject:
            return class_for_type(name)
    return MediaObject


def _connection_params(sink: MediaElement, media_type: str | None) -> dict[str, Any]:
    if media_type is not None and media_type not in MEDIA_TYPES:
        raise ValueError(f"'media_type' must be in {list(MEDIA_TYPES)} or None (got {media_type!r})")
    params: dict[str, Any] = {"sink": sink.id}
    if media_type is not None:
        params["media_type"] = media_type
    return params


def _wire_value(value: Any) -> Any:
    return value.id if isinstance(value, MediaObject) else value
