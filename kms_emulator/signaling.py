"""Signaling-only media backend: valid SDP answers and synthetic ICE/flow events, no sockets, no media.

It is cheap enough to hold thousands of endpoints in one process. Choices:
- Answers keep the offer's m-lines, order and mids, mirror the directions, keep the first two codecs of each
  m-line (plus their rtx), and bundle everything, so gatherCandidates emits host candidates for the **first mid
  only** (sdpMLineIndex 0): one UDP and one TCP candidate, then IceGatheringDone.
- Once gathering has been done, a remote SDP is set and one remote candidate was added, the endpoint "connects":
  IceComponentStateChanged CONNECTING, NewCandidatePairSelected, IceComponentStateChanged CONNECTED,
  MediaStateChanged and ConnectionStateChanged to CONNECTED, then MediaFlowIn FLOWING for the media the remote
  side sends and MediaFlowOut FLOWING on connected sinks (and on itself when a connected source flows in).
- Simulcast (rid/simulcast lines) is declined by leaving it out of the answer, as KMS does not support it.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import string
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from kms_emulator.recorder import NoMediaSink
from kms_emulator.registry import Emit, EndpointMedia

_ICE_CHARS = string.ascii_letters + string.digits + "+/"
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_DIRECTIONS = tuple(_MIRROR)
_CODECS_PER_MLINE = 2
_COPIED_ATTRIBUTES = ("extmap:", "rtcp-rsize")


@dataclass
class MediaSection:
    kind: str
    port: int
    proto: str
    formats: list[str]
    attributes: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        prefix = name + ":"
        return [a[len(prefix) :] for a in self.attributes if a.startswith(prefix)]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    @property
    def mid(self) -> str | None:
        return self.first("mid")

    @property
    def direction(self) -> str:
        return next((a for a in self.attributes if a in _DIRECTIONS), "sendrecv")


def parse_offer(sdp: str) -> tuple[list[str], list[MediaSection]]:
    """Split an SDP into session attribute values and media sections; ValueError if it is not SDP."""
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise ValueError("SDP must start with v=0")
    session: list[str] = []
    sections: list[MediaSection] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise ValueError(f"malformed SDP line {line!r}")
        key, value = line[0], line[2:]
        if key == "m":
            sections.append(_parse_mline(value))
        elif key == "a":
            (sections[-1].attributes if sections else session).append(value)
    if not sections:
        raise ValueError("SDP has no m= line")
    return session, sections


def _parse_mline(value: str) -> MediaSection:
    parts = value.split()
    if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
        raise ValueError(f"malformed m= line {value!r}")
    return MediaSection(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:])


def answer_direction(offered: str, *, recvonly: bool = False, sendonly: bool = False) -> str:
    mirrored = _MIRROR.get(offered, "sendrecv")
    send = mirrored in ("sendrecv", "sendonly") and not recvonly
    recv = mirrored in ("sendrecv", "recvonly") and not sendonly
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (send, recv), "inactive"
    )


def select_codecs(section: MediaSection, limit: int = _CODECS_PER_MLINE) -> list[str]:
    """First `limit` primary codecs of the m-line, plus the rtx payloads that repair them."""
    rtpmap = {v.split()[0]: v.split()[1].lower() for v in section.values("rtpmap") if " " in v}
    primary = [pt for pt in section.formats if not rtpmap.get(pt, "").startswith("rtx/")]
    primary = [pt for pt in primary if pt in rtpmap or (pt.isdigit() and int(pt) < 96)][:limit]
    apt = {v.split()[0]: v.split(" ", 1)[1] for v in section.values("fmtp") if " " in v}
    chosen = set(primary)
    for pt in section.formats:
        if rtpmap.get(pt, "").startswith("rtx/") and apt.get(pt, "").replace("apt=", "") in primary:
            chosen.add(pt)
    return [pt for pt in section.formats if pt in chosen]


@dataclass
class Credentials:
    ufrag: str
    pwd: str
    fingerprint: str
    session_id: int
    cname: str
    ssrc: int

    @classmethod
    def random(cls) -> Credentials:
        rng = random.SystemRandom()
        return cls(
            ufrag="".join(rng.choice(_ICE_CHARS) for _ in range(4)),
            pwd="".join(rng.choice(_ICE_CHARS) for _ in range(24)),
            fingerprint=":".join(f"{b:02X}" for b in os.urandom(32)),
            session_id=rng.randrange(10**17, 10**18),
            cname=secrets.token_urlsafe(12)[:16],
            ssrc=rng.randrange(1, 2**32),
        )


def build_answer(offer: str, credentials: Credentials, *, recvonly: bool = False, sendonly: bool = False) -> str:
    """A valid SDP answer to `offer` (see the module docstring for what is kept)."""
    _, sections = parse_offer(offer)
    bundled = [s.mid for s in sections if s.port != 0 and s.mid is not None]
    lines = [
        "v=0",
        f"o=- {credentials.session_id} 2 IN IP4 127.0.0.1",
        "s=Kurento Media Server",
        "t=0 0",
    ]
    if bundled:
        lines.append("a=group:BUNDLE " + " ".join(str(m) for m in bundled))
    lines.append("a=msid-semantic: WMS kurento")
    for section in sections:
        lines.extend(_answer_section(section, credentials, recvonly=recvonly, sendonly=sendonly))
    return "\r\n".join(lines) + "\r\n"


def _answer_section(section: MediaSection, credentials: Credentials, *, recvonly: bool, sendonly: bool) -> list[str]:
    if section.kind == "application":
        return _answer_application(section, credentials)
    codecs = select_codecs(section) if section.port != 0 else section.formats[:1]
    if section.port == 0 or not codecs:
        lines = [f"m={section.kind} 0 {section.proto} {' '.join(section.formats[:1] or ['0'])}"]
        return lines + ["c=IN IP4 0.0.0.0"] + ([f"a=mid:{section.mid}"] if section.mid else [])
    direction = answer_direction(section.direction, recvonly=recvonly, sendonly=sendonly)
    lines = [f"m={section.kind} 9 {section.proto} {' '.join(codecs)}", *_transport_lines(section, credentials)]
    lines += [f"a={a}" for a in section.attributes if a.startswith(_COPIED_ATTRIBUTES)]
    lines.append(f"a={direction}")
    lines.append("a=rtcp-mux")
    for name in ("rtpmap", "rtcp-fb", "fmtp"):
        lines += [f"a={name}:{v}" for v in section.values(name) if v.split(" ", 1)[0] in codecs]
    if direction in ("sendrecv", "sendonly"):
        ssrc = (credentials.ssrc + sum(map(ord, str(section.mid)))) % 2**32 or 1
        track = f"{section.kind}-{section.mid}"
        lines += [f"a=msid:kurento {track}", f"a=ssrc:{ssrc} cname:{credentials.cname}"]
    return lines


def _answer_application(section: MediaSection, credentials: Credentials) -> list[str]:
    if section.port == 0:
        return [f"m=application 0 {section.proto} {' '.join(section.formats)}", "c=IN IP4 0.0.0.0"]
    lines = [f"m=application 9 {section.proto} {' '.join(section.formats)}", *_transport_lines(section, credentials)]
    if section.first("sctp-port") is not None or "webrtc-datachannel" in section.formats:
        lines += ["a=sctp-port:5000", "a=max-message-size:262144"]
    return lines


def _transport_lines(section: MediaSection, credentials: Credentials) -> list[str]:
    setup = {"actpass": "active", "active": "passive", "passive": "active"}.get(
        section.first("setup") or "actpass", "active"
    )
    lines = [
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{credentials.ufrag}",
        f"a=ice-pwd:{credentials.pwd}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {credentials.fingerprint}",
        f"a=setup:{setup}",
    ]
    return lines + ([f"a=mid:{section.mid}"] if section.mid is not None else [])


def build_offer(credentials: Credentials, *, recvonly: bool = False, sendonly: bool = False) -> str:
    """An offer with one audio (opus) and one video (VP8 + rtx) m-line, bundled, setup:actpass."""
    direction = "recvonly" if recvonly else "sendonly" if sendonly else "sendrecv"
    template = {
        "audio": ("111", ["rtpmap:111 opus/48000/2", "fmtp:111 minptime=10;useinbandfec=1"]),
        "video": (
            "96 97",
            [
                "rtpmap:96 VP8/90000",
                "rtcp-fb:96 nack",
                "rtcp-fb:96 nack pli",
                "rtcp-fb:96 goog-remb",
                "rtpmap:97 rtx/90000",
                "fmtp:97 apt=96",
            ],
        ),
    }
    lines = [
        "v=0",
        f"o=- {credentials.session_id} 1 IN IP4 127.0.0.1",
        "s=Kurento Media Server",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS kurento",
    ]
    for mid, (kind, (formats, attributes)) in enumerate(template.items()):
        lines.append(f"m={kind} 9 UDP/TLS/RTP/SAVPF {formats}")
        section = MediaSection(kind, 9, "UDP/TLS/RTP/SAVPF", formats.split(), [f"mid:{mid}"])
        lines += [line.replace("a=setup:active", "a=setup:actpass") for line in _transport_lines(section, credentials)]
        lines += [f"a={direction}", "a=rtcp-mux", *(f"a={a}" for a in attributes)]
    return "\r\n".join(lines) + "\r\n"


def _media_in_directions(local_sdp: str, directions: tuple[str, ...]) -> list[str]:
    _, sections = parse_offer(local_sdp)
    return sorted(
        {s.kind.upper() for s in sections if s.kind in ("audio", "video") and s.port != 0 and s.direction in directions}
    )


def receiving_media(local_sdp: str) -> list[str]:
    """MediaTypes (AUDIO/VIDEO) our side of the SDP receives, i.e. the remote peer sends."""
    return _media_in_directions(local_sdp, ("sendrecv", "recvonly"))


def sending_media(local_sdp: str) -> list[str]:
    """MediaTypes (AUDIO/VIDEO) our side of the SDP sends."""
    return _media_in_directions(local_sdp, ("sendrecv", "sendonly"))


class SignalingEndpoint:
    """EndpointMedia without media: tracks just enough state to emit a plausible event sequence."""

    def __init__(self, endpoint_id: str, emit: Emit, *, recvonly: bool = False, sendonly: bool = False) -> None:
        self.endpoint_id = endpoint_id
        self._emit = emit
        self._recvonly = recvonly
        self._sendonly = sendonly
        self._credentials = Credentials.random()
        self._port = random.randrange(20000, 60000)
        self._local_sdp: str | None = None
        self._first_mid = "0"
        self._gathered = False
        self._remote_candidate: str | None = None
        self._negotiated = False
        self._connected = False
        self._flowing_in: set[str] = set()
        self._flowing_out: set[str] = set()
        self._sinks: dict[int, tuple[SignalingEndpoint, str | None]] = {}
        self._sources: dict[int, tuple[SignalingEndpoint, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._released = False

    # -- negotiation ------------------------------------------------------------------------------------------
    async def process_offer(self, offer: str) -> str:
        _, sections = parse_offer(offer)
        self._first_mid = next((s.mid for s in sections if s.mid is not None), "0")
        self._local_sdp = build_answer(offer, self._credentials, recvonly=self._recvonly, sendonly=self._sendonly)
        self._set_negotiated()
        return self._local_sdp

    async def generate_offer(self) -> str:
        self._local_sdp = build_offer(self._credentials, recvonly=self._recvonly, sendonly=self._sendonly)
        return self._local_sdp

    async def process_answer(self, answer: str) -> str:
        parse_offer(answer)
        self._set_negotiated()
        assert self._local_sdp is not None
        return self._local_sdp

    def _set_negotiated(self) -> None:
        self._negotiated = True
        self._maybe_connect()

    # -- ICE --------------------------------------------------------------------------------------------------
    async def gather_candidates(self) -> None:
        self._spawn(self._gather())

    async def _gather(self) -> None:
        self._emit("IceComponentStateChanged", {"streamId": 1, "componentId": 1, "state": "GATHERING"})
        for candidate in self._local_candidates():
            await asyncio.sleep(0)
            self._emit(
                "IceCandidateFound",
                {"candidate": {"candidate": candidate, "sdpMid": self._first_mid, "sdpMLineIndex": 0}},
            )
        self._emit("IceGatheringDone", {})
        self._gathered = True
        self._maybe_connect()

    def _local_candidates(self) -> list[str]:
        return [
            f"candidate:1 1 UDP 2015363327 127.0.0.1 {self._port} typ host",
            "candidate:2 1 TCP 1015021503 127.0.0.1 9 typ host tcptype active",
        ]

    async def add_ice_candidate(self, candidate: str, sdp_mid: str, sdp_mline_index: int) -> None:
        if candidate and self._remote_candidate is None:
            self._remote_candidate = candidate
            self._maybe_connect()

    def _maybe_connect(self) -> None:
        if self._connected or not (self._gathered and self._negotiated and self._remote_candidate):
            return
        self._connected = True
        self._spawn(self._connect_sequence())

    async def _connect_sequence(self) -> None:
        await asyncio.sleep(0)
        if self._released:
            return
        self._emit("IceComponentStateChanged", {"streamId": 1, "componentId": 1, "state": "CONNECTING"})
        pair = {
            "streamId": "1",
            "componentId": 1,
            "localCandidate": self._local_candidates()[0],
            "remoteCandidate": self._remote_candidate,
        }
        self._emit("NewCandidatePairSelected", {"candidatePair": pair})
        self._emit("IceComponentStateChanged", {"streamId": 1, "componentId": 1, "state": "CONNECTED"})
        self._emit(
            "DtlsConnectionStateChange", {"streamId": "1", "componentId": 1, "connectionId": "1", "state": "CONNECTED"}
        )
        for event in ("MediaStateChanged", "ConnectionStateChanged"):
            self._emit(event, {"oldState": "DISCONNECTED", "newState": "CONNECTED"})
        assert self._local_sdp is not None
        for media_type in receiving_media(self._local_sdp):
            self._flow_in(media_type)
        for source, source_type in list(self._sources.values()):
            for flowing in source._flowing_in:
                if source_type in (None, flowing):
                    self._flow_out(flowing)

    # -- element connections and flow events ------------------------------------------------------------------
    def _flow_in(self, media_type: str) -> None:
        if media_type in self._flowing_in:
            return
        self._flowing_in.add(media_type)
        self._emit("MediaFlowInStateChanged", {"state": "FLOWING", "padName": "default", "mediaType": media_type})
        for sink, sink_type in list(self._sinks.values()):
            if sink_type in (None, media_type) and sink._connected:
                sink._flow_out(media_type)

    def _flow_out(self, media_type: str) -> None:
        if media_type in self._flowing_out or self._local_sdp is None:
            return
        if media_type not in sending_media(self._local_sdp):
            return
        self._flowing_out.add(media_type)
        self._emit("MediaFlowOutStateChanged", {"state": "FLOWING", "padName": "default", "mediaType": media_type})

    def connect(self, sink: EndpointMedia, media_type: str | None) -> None:
        if not isinstance(sink, SignalingEndpoint):
            return
        self._sinks[id(sink)] = (sink, media_type)
        sink._sources[id(self)] = (self, media_type)
        if sink._connected:
            for flowing in list(self._flowing_in):
                if media_type in (None, flowing):
                    sink._flow_out(flowing)

    def disconnect(self, sink: EndpointMedia, media_type: str | None) -> None:
        if isinstance(sink, SignalingEndpoint):
            self._sinks.pop(id(sink), None)
            sink._sources.pop(id(self), None)

    async def release(self) -> None:
        self._released = True
        for sink, _ in list(self._sinks.values()):
            sink._sources.pop(id(self), None)
        for source, _ in list(self._sources.values()):
            source._sinks.pop(id(self), None)
        self._sinks.clear()
        self._sources.clear()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class SignalingBackend:
    """MediaBackend for `--mode signaling`."""

    def create_endpoint(
        self, endpoint_id: str, emit: Emit, *, recvonly: bool = False, sendonly: bool = False
    ) -> SignalingEndpoint:
        return SignalingEndpoint(endpoint_id, emit, recvonly=recvonly, sendonly=sendonly)

    def create_recording_sink(self, endpoint_id: str, uri: str, profile: str) -> NoMediaSink:
        return NoMediaSink()

    async def close(self) -> None:
        return None
