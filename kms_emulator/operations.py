"""`invoke` operations per type level (MediaObject, MediaElement, SdpEndpoint, WebRtcEndpoint, ServerManager...).

An operation is found by name and by the level that declares it; anything else, including 6.x names such as
`getChilds`, gets 40008 "Method 'x' with N parameters not found" as KMS 7 does. Plain properties (see
registry.PROPERTIES_BY_LEVEL) are served by generic get<Prop>/set<Prop>.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import psutil

from kms_emulator import protocol
from kms_emulator.protocol import RpcError, complex_value
from kms_emulator.registry import READ_ONLY_PROPERTIES, EndpointMedia, MediaObject

if TYPE_CHECKING:
    from kms_emulator.server import Emulator

Params = dict[str, Any]
Handler = Callable[[MediaObject, Params], Awaitable[Any]]
MEDIA_TYPES = ("AUDIO", "VIDEO", "DATA")
KMS_VERSION = "7.3.0"
MODULE_FACTORIES = {
    "core": ["HubPort", "MediaPipeline", "PassThrough"],
    "elements": [
        "AlphaBlending",
        "Composite",
        "Dispatcher",
        "DispatcherOneToMany",
        "HttpPostEndpoint",
        "Mixer",
        "PlayerEndpoint",
        "RecorderEndpoint",
        "RtpEndpoint",
        "WebRtcEndpoint",
    ],
    "filters": ["FaceOverlayFilter", "GStreamerFilter", "ImageOverlayFilter", "ZBarFilter"],
}


class Operations:
    """Dispatch table of invoke operations; handlers take (object, operationParams) and return the value."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._process = psutil.Process()
        self.table: dict[str, tuple[set[str], Handler]] = {}
        for level, names in _DECLARED.items():
            for name in names:
                levels = self.table.get(name, (set(), None))[0] | {level}
                self.table[name] = (levels, getattr(self, f"_{name}"))

    async def invoke(self, obj: MediaObject, operation: str, params: Params | None, session_id: str) -> Any:
        entry = self.table.get(operation)
        if entry is not None and any(obj.is_a(level) for level in entry[0]):
            return await entry[1](obj, params or {})
        prop = operation[3:4].lower() + operation[4:]
        found, default = obj.property_default(prop)
        if found and operation.startswith("get"):
            return obj.properties.get(prop, default)
        if found and operation.startswith("set") and prop not in READ_ONLY_PROPERTIES:
            obj.properties[prop] = _arg(params or {}, prop, object)
            return None
        raise protocol.operation_not_found(operation, len(params or {}))

    # -- MediaObject ------------------------------------------------------------------------------------------
    async def _getId(self, obj: MediaObject, p: Params) -> str:
        return obj.id

    async def _getName(self, obj: MediaObject, p: Params) -> str:
        return obj.name or obj.id

    async def _setName(self, obj: MediaObject, p: Params) -> None:
        obj.name = _arg(p, "name", str)

    async def _getMediaPipeline(self, obj: MediaObject, p: Params) -> str | None:
        if obj.type == "MediaPipeline":
            return obj.id
        return obj.pipeline.id if obj.pipeline else None

    async def _getParent(self, obj: MediaObject, p: Params) -> str | None:
        return obj.parent.id if obj.parent else None

    async def _getChildren(self, obj: MediaObject, p: Params) -> list[str]:
        return [child.id for child in obj.children]

    async def _getCreationTime(self, obj: MediaObject, p: Params) -> int:
        return obj.creation_time

    async def _getSendTagsInEvents(self, obj: MediaObject, p: Params) -> bool:
        return obj.send_tags_in_events

    async def _setSendTagsInEvents(self, obj: MediaObject, p: Params) -> None:
        obj.send_tags_in_events = _arg(p, "sendTagsInEvents", bool)

    async def _addTag(self, obj: MediaObject, p: Params) -> None:
        obj.tags[_arg(p, "key", str)] = _arg(p, "value", str)

    async def _removeTag(self, obj: MediaObject, p: Params) -> None:
        obj.tags.pop(_arg(p, "key", str), None)

    async def _getTag(self, obj: MediaObject, p: Params) -> str:
        key = _arg(p, "key", str)
        if key not in obj.tags:
            raise RpcError(protocol.TAG_KEY_NOT_FOUND, f"Tag key '{key}' not found")
        return obj.tags[key]

    async def _getTags(self, obj: MediaObject, p: Params) -> list[dict[str, Any]]:
        return self.tag_list(obj)

    def tag_list(self, obj: MediaObject) -> list[dict[str, Any]]:
        return [complex_value("Tag", key=k, value=v) for k, v in obj.tags.items()]

    # -- MediaPipeline / MediaElement -------------------------------------------------------------------------
    async def _getGstreamerDot(self, obj: MediaObject, p: Params) -> str:
        return f'digraph "{obj.id}" {{}}\n'

    async def _dumpGstreamerDot(self, obj: MediaObject, p: Params) -> None:
        return None

    async def _connect(self, obj: MediaObject, p: Params) -> None:
        sink = self._element(p)
        media_type = _media_type(p)
        types = [media_type] if media_type else list(MEDIA_TYPES)
        added = [t for t in types if (sink.id, t) not in obj.sinks]
        for t in added:
            obj.sinks.add((sink.id, t))
            sink.sources.add((obj.id, t))
        target = _media_sink(sink)
        if added and obj.media is not None and target is not None:
            obj.media.connect(target, media_type)
        for t in added:
            self.emulator.emit(obj, "ElementConnected", _connection_fields(sink.id, t))

    async def _disconnect(self, obj: MediaObject, p: Params) -> None:
        sink = self._element(p)
        media_type = _media_type(p)
        removed = [t for t in ([media_type] if media_type else MEDIA_TYPES) if (sink.id, t) in obj.sinks]
        for t in removed:
            obj.sinks.discard((sink.id, t))
            sink.sources.discard((obj.id, t))
        target = _media_sink(sink)
        if removed and obj.media is not None and target is not None:
            obj.media.disconnect(target, media_type)
        for t in removed:
            self.emulator.emit(obj, "ElementDisconnected", _connection_fields(sink.id, t))

    async def _getSinkConnections(self, obj: MediaObject, p: Params) -> list[dict[str, Any]]:
        wanted = _media_type(p)
        return [_connection_data(obj.id, sink, t) for sink, t in sorted(obj.sinks) if wanted in (None, t)]

    async def _getSourceConnections(self, obj: MediaObject, p: Params) -> list[dict[str, Any]]:
        wanted = _media_type(p)
        return [_connection_data(src, obj.id, t) for src, t in sorted(obj.sources) if wanted in (None, t)]

    async def _setAudioFormat(self, obj: MediaObject, p: Params) -> None:
        _arg(p, "caps", dict)

    async def _setVideoFormat(self, obj: MediaObject, p: Params) -> None:
        _arg(p, "caps", dict)

    async def _getStats(self, obj: MediaObject, p: Params) -> dict[str, Any]:
        return {}

    async def _isMediaFlowingIn(self, obj: MediaObject, p: Params) -> bool:
        _arg(p, "mediaType", str)
        return False

    async def _isMediaFlowingOut(self, obj: MediaObject, p: Params) -> bool:
        _arg(p, "mediaType", str)
        return False

    async def _isMediaTranscoding(self, obj: MediaObject, p: Params) -> bool:
        _arg(p, "mediaType", str)
        return False

    def _element(self, p: Params) -> MediaObject:
        sink = self.emulator.lookup(_arg(p, "sink", str))
        if not sink.is_a("MediaElement"):
            raise protocol.marshall_wrong_type("sink", "MediaElement")
        return sink

    # -- SdpEndpoint ------------------------------------------------------------------------------------------
    async def _processOffer(self, obj: MediaObject, p: Params) -> str:
        offer = _arg(p, "offer", str)
        _check_not_negotiated(obj)
        if not offer.strip():
            raise RpcError(protocol.SDP_PARSE_ERROR, "Empty offer not valid")
        obj.remote_sdp = offer  # claimed before awaiting, so a concurrent second offer gets 40208
        try:
            answer = await _media(obj).process_offer(offer)
        except ValueError:
            obj.remote_sdp = None
            raise RpcError(protocol.SDP_PARSE_ERROR, "Invalid SDP") from None
        obj.local_sdp = answer
        await self._after_negotiation(obj)
        return answer

    async def _generateOffer(self, obj: MediaObject, p: Params) -> str:
        if p.get("options") is not None and not isinstance(p["options"], dict):
            raise protocol.marshall_wrong_type("options", "OfferOptions")
        _check_not_negotiated(obj)
        obj.offer_generated = True
        obj.local_sdp = await _media(obj).generate_offer()
        return obj.local_sdp

    async def _processAnswer(self, obj: MediaObject, p: Params) -> str:
        answer = _arg(p, "answer", str)
        if not obj.offer_generated:
            raise RpcError(
                protocol.SDP_END_POINT_NOT_OFFER_GENERATED,
                "Offer not generated. It is not possible to process an answer.",
            )
        if obj.answer_processed:
            raise RpcError(protocol.SDP_END_POINT_ANSWER_ALREADY_PROCCESED, "Sdp answer already processed")
        if not answer.strip():
            raise RpcError(protocol.SDP_PARSE_ERROR, "Empty answer not valid")
        obj.answer_processed = True
        try:
            obj.local_sdp = await _media(obj).process_answer(answer)
        except ValueError:
            obj.answer_processed = False
            raise RpcError(protocol.SDP_PARSE_ERROR, "Invalid SDP") from None
        obj.remote_sdp = answer
        await self._after_negotiation(obj)
        return obj.local_sdp

    async def _after_negotiation(self, obj: MediaObject) -> None:
        self.emulator.emit(obj, "MediaSessionStarted", {})
        pending, obj.pending_candidates = obj.pending_candidates, []
        for candidate in pending:
            await _media(obj).add_ice_candidate(*candidate)

    async def _getLocalSessionDescriptor(self, obj: MediaObject, p: Params) -> str:
        if obj.local_sdp is None:
            raise RpcError(protocol.SDP_END_POINT_NO_LOCAL_SDP_ERROR, "No local SDP")
        return obj.local_sdp

    async def _getRemoteSessionDescriptor(self, obj: MediaObject, p: Params) -> str:
        if obj.remote_sdp is None:
            raise RpcError(protocol.SDP_END_POINT_NO_REMOTE_SDP_ERROR, "No remote SDP")
        return obj.remote_sdp

    # -- BaseRtpEndpoint / WebRtcEndpoint ---------------------------------------------------------------------
    async def _requestKeyframe(self, obj: MediaObject, p: Params) -> None:
        return None

    async def _getMediaState(self, obj: MediaObject, p: Params) -> str:
        return "DISCONNECTED"

    async def _getConnectionState(self, obj: MediaObject, p: Params) -> str:
        return "DISCONNECTED"

    async def _gatherCandidates(self, obj: MediaObject, p: Params) -> None:
        # KMS has no ICE agent before an SDP is processed or generated, and the gather signal fails.
        if obj.local_sdp is None:
            raise RpcError(protocol.ICE_GATHER_CANDIDATES_ERROR, "Error gathering candidates")
        if not obj.gathering_started:
            obj.gathering_started = True
            await _media(obj).gather_candidates()

    async def _addIceCandidate(self, obj: MediaObject, p: Params) -> None:
        raw = protocol.strip_complex(_arg(p, "candidate", dict))
        candidate = _arg(raw, "candidate", str)
        sdp_mid = _arg(raw, "sdpMid", str)
        index = _arg(raw, "sdpMLineIndex", int)
        if not candidate:
            return  # end-of-candidates
        obj.remote_candidates.append((candidate, sdp_mid, index))
        if obj.remote_sdp is None or obj.local_sdp is None:
            obj.pending_candidates.append((candidate, sdp_mid, index))
            return
        await _media(obj).add_ice_candidate(candidate, sdp_mid, index)

    async def _createDataChannel(self, obj: MediaObject, p: Params) -> None:
        return None

    async def _closeDataChannel(self, obj: MediaObject, p: Params) -> None:
        _arg(p, "channelId", int)

    async def _getICECandidatePairs(self, obj: MediaObject, p: Params) -> list[Any]:
        return []

    async def _getIceConnectionState(self, obj: MediaObject, p: Params) -> list[Any]:
        return []

    async def _getDtlsConnectionState(self, obj: MediaObject, p: Params) -> list[Any]:
        return []

    # -- UriEndpoint / RecorderEndpoint -----------------------------------------------------------------------
    async def _getUri(self, obj: MediaObject, p: Params) -> str:
        return str(obj.constructor_params.get("uri", ""))

    async def _getState(self, obj: MediaObject, p: Params) -> str:
        return str(obj.recorder.state) if obj.recorder is not None else "STOP"

    async def _pause(self, obj: MediaObject, p: Params) -> None:
        if obj.recorder is not None:
            await obj.recorder.pause()

    async def _stop(self, obj: MediaObject, p: Params) -> None:
        if obj.recorder is not None:
            await obj.recorder.stop(wait=False)

    async def _record(self, obj: MediaObject, p: Params) -> None:
        await obj.recorder.record()

    async def _stopAndWait(self, obj: MediaObject, p: Params) -> None:
        await obj.recorder.stop(wait=True)

    # -- ServerManager ----------------------------------------------------------------------------------------
    async def _getInfo(self, obj: MediaObject, p: Params) -> dict[str, Any]:
        modules = [
            complex_value(
                "ModuleInfo", factories=factories, generationTime="Jan  1 2024 00:00:00", name=name, version=KMS_VERSION
            )
            for name, factories in MODULE_FACTORIES.items()
        ]
        return complex_value(
            "ServerInfo", capabilities=["transactions"], modules=modules, type="KMS", version=KMS_VERSION
        )

    async def _getUsedMemory(self, obj: MediaObject, p: Params) -> int:
        rss_kib = self._process.memory_info().rss // 1024
        return int(rss_kib + self.emulator.config.memory_offset_kib)

    async def _getPipelines(self, obj: MediaObject, p: Params) -> list[str]:
        return [pipeline.id for pipeline in self.emulator.registry.pipelines()]

    async def _getSessions(self, obj: MediaObject, p: Params) -> list[str]:
        return list(self.emulator.sessions.sessions)

    async def _getCpuCount(self, obj: MediaObject, p: Params) -> int:
        return os.cpu_count() or 1

    async def _getUsedCpu(self, obj: MediaObject, p: Params) -> float:
        interval = _arg(p, "interval", int)
        psutil.cpu_percent(None)
        await asyncio.sleep(max(interval, 0) / 1000)
        return float(psutil.cpu_percent(None))

    async def _getMetadata(self, obj: MediaObject, p: Params) -> str:
        return ""

    async def _getKmd(self, obj: MediaObject, p: Params) -> str:
        name = _arg(p, "moduleName", str)
        if name not in MODULE_FACTORIES:
            raise RpcError(protocol.SERVER_MANAGER_ERROR_KMD_NOT_FOUND, f"Kmd for module '{name}' not found")
        return json.dumps(
            {
                "name": name,
                "version": KMS_VERSION,
                "kurentoVersion": "^7.0.0",
                "remoteClasses": [{"name": f} for f in MODULE_FACTORIES[name]],
            }
        )


# Operations declared at each level of the kmd (the handler is the method named "_<operation>").
_DECLARED: dict[str, tuple[str, ...]] = {
    "MediaObject": (
        "getId",
        "getName",
        "setName",
        "getMediaPipeline",
        "getParent",
        "getChildren",
        "getCreationTime",
        "getSendTagsInEvents",
        "setSendTagsInEvents",
        "addTag",
        "removeTag",
        "getTag",
        "getTags",
    ),
    "MediaPipeline": ("getGstreamerDot", "dumpGstreamerDot"),
    "MediaElement": (
        "getGstreamerDot",
        "dumpGstreamerDot",
        "connect",
        "disconnect",
        "getSinkConnections",
        "getSourceConnections",
        "setAudioFormat",
        "setVideoFormat",
        "getStats",
        "isMediaFlowingIn",
        "isMediaFlowingOut",
        "isMediaTranscoding",
    ),
    "SdpEndpoint": (
        "processOffer",
        "generateOffer",
        "processAnswer",
        "getLocalSessionDescriptor",
        "getRemoteSessionDescriptor",
    ),
    "BaseRtpEndpoint": ("requestKeyframe", "getMediaState", "getConnectionState"),
    "WebRtcEndpoint": (
        "gatherCandidates",
        "addIceCandidate",
        "createDataChannel",
        "closeDataChannel",
        "getICECandidatePairs",
        "getIceConnectionState",
        "getDtlsConnectionState",
    ),
    "UriEndpoint": ("getUri", "getState", "pause", "stop"),
    "RecorderEndpoint": ("record", "stopAndWait"),
    "ServerManager": (
        "getInfo",
        "getUsedMemory",
        "getPipelines",
        "getSessions",
        "getCpuCount",
        "getUsedCpu",
        "getMetadata",
        "getKmd",
    ),
}


def _arg(params: Params, name: str, kind: type) -> Any:
    """A required operation parameter, 40001 when missing or of the wrong JSON type."""
    if name not in params:
        raise protocol.marshall_missing(name)
    value = params[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise protocol.marshall_wrong_type(name, "integer")
    if kind is not object and not isinstance(value, kind):
        kind_name = {str: "string", bool: "boolean", dict: "object"}.get(kind, "value")
        raise protocol.marshall_wrong_type(name, kind_name)
    return value


def _media_type(p: Params) -> str | None:
    value = p.get("mediaType")
    if value is not None and value not in MEDIA_TYPES:
        raise protocol.marshall_wrong_type("mediaType", "MediaType")
    return value


def _check_not_negotiated(obj: MediaObject) -> None:
    if obj.local_sdp is not None or obj.remote_sdp is not None or obj.offer_generated:
        raise RpcError(protocol.SDP_END_POINT_ALREADY_NEGOTIATED, "Endpoint already negotiated")


def _media_sink(sink: MediaObject) -> EndpointMedia | None:
    """What a source's media forwards to: an endpoint's media, or a recorder's sink."""
    if sink.media is not None:
        return sink.media
    if sink.recorder is not None:
        return cast(EndpointMedia, sink.recorder.sink)  # connect and disconnect take it by duck type
    return None


def _media(obj: MediaObject) -> EndpointMedia:
    """The backend media of an SdpEndpoint, which every one gets when created (Emulator._rpc_create)."""
    assert obj.media is not None, f"{obj.id} has no media"
    return obj.media


def _connection_fields(sink_id: str, media_type: str) -> dict[str, Any]:
    return {
        "sink": sink_id,
        "mediaType": media_type,
        "sourceMediaDescription": "default",
        "sinkMediaDescription": "default",
    }


def _connection_data(source_id: str, sink_id: str, media_type: str) -> dict[str, Any]:
    return complex_value(
        "ElementConnectionData",
        source=source_id,
        sink=sink_id,
        type=media_type,
        sourceDescription="default",
        sinkDescription="default",
    )
