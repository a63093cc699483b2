"""Media mode backend of the KMS emulator: one real aiortc peer connection per WebRtcEndpoint.

Each endpoint is an ``RTCPeerConnection`` that only uses loopback host candidates (no STUN,
no other interfaces). Answers/offers are returned without ``a=candidate`` lines; the local
candidates are announced through ``IceCandidateFound`` events from :meth:`gather_candidates`
(Kurento-style trickle ICE). Remote candidates come in through :meth:`add_ice_candidate`
and are buffered until the remote description is known.

Forwarding: every incoming track of an endpoint is read by a reader task that decodes
frames and fans them out to the outgoing tracks (:class:`_OutTrack`) of the sink endpoints
connected for that media kind. Each sink owns one ``_OutTrack`` per kind, attached to its
RTCRtpSender when it negotiates, so a sink connected before any media exists simply waits
and starts sending as soon as the first frame arrives. Like in Kurento, a sink has at most
one source per media kind; connecting another source replaces the previous one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from fractions import Fraction
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet

from kms_emulator import recorder
from kms_emulator.registry import Emit, EndpointMedia

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
MEDIA_TYPE_OF_KIND = {"audio": "AUDIO", "video": "VIDEO"}
# A flow is NOT_FLOWING once no frame was seen for this long.
FLOW_TIMEOUT = 2.0
FLOW_CHECK_INTERVAL = 0.25
# Frames kept per outgoing track when the encoder is slower than the source.
OUT_QUEUE_SIZE = {"audio": 10, "video": 2}
_CLOCK_EPOCH = time.monotonic()

# What an incoming track yields and an outgoing one sends on, unchanged.
Media = Frame | Packet


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Replacement for aioice's host address discovery: loopback only."""
    return ["127.0.0.1"] if use_ipv4 else []


def _install_loopback_only() -> None:
    # aioice excludes 127.0.0.1 and uses every other interface; the emulator must keep all
    # traffic on the loopback interface.
    aioice.ice.get_host_addresses = _loopback_host_addresses


def parse_candidate(text: str, sdp_mid: str | None = None, sdp_mline_index: int | None = None) -> RTCIceCandidate:
    """One ICE candidate line (`candidate:...`, with or without `a=`) as aiortc's RTCIceCandidate.

    The one parser of candidate lines: the emulator's endpoints and the tests' peers use it.
    ValueError when the line is not a candidate.
    """
    body = text.strip().removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = candidate_from_sdp(body)
    except Exception as exc:  # aiortc raises IndexError/ValueError on a short or garbled line
        raise ValueError(f"invalid ICE candidate {text!r}: {exc}") from exc
    candidate.sdpMid = sdp_mid
    candidate.sdpMLineIndex = sdp_mline_index
    return candidate


def split_candidates(sdp: str) -> tuple[str, list[dict]]:
    """The SDP without its candidate lines, and those candidates as browser-style dicts.

    With BUNDLE aiortc repeats the same candidates under every m-line; each is kept once,
    under the first m-line that carries it.
    """
    lines: list[str] = []
    raw: list[tuple[int, str]] = []
    mids: list[str] = []
    index = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mids.append(str(index))
        elif line.startswith("a=mid:") and index >= 0:
            mids[index] = line[len("a=mid:") :].strip()
        if line.startswith("a=candidate:"):
            raw.append((index, line[2:].strip()))
        elif not line.startswith("a=end-of-candidates"):
            lines.append(line)
    found: list[dict] = []
    seen: set[str] = set()
    for line_index, text in raw:
        if text not in seen:
            seen.add(text)
            mid = mids[line_index] if 0 <= line_index < len(mids) else None
            found.append({"candidate": text, "sdpMid": mid, "sdpMLineIndex": line_index})
    return "\r\n".join(lines) + "\r\n", found


def strip_candidates(sdp: str) -> str:
    """Remove a=candidate and a=end-of-candidates lines from an SDP."""
    return split_candidates(sdp)[0]


def local_candidates_from_sdp(sdp: str) -> list[dict]:
    """IceCandidate dicts for the candidates of an SDP, once per transport.

    m-lines bundled behind another m-line share its transport, so their (repeated)
    candidates are reported only for the first mid of the BUNDLE group.
    """
    bundled_followers: set[str] = set()
    for group in SessionDescription.parse(sdp).group:
        if group.semantic == "BUNDLE" and group.items:
            bundled_followers.update(str(item) for item in group.items[1:])
    return [c for c in split_candidates(sdp)[1] if c["sdpMid"] not in bundled_followers]


class _FlowState:
    """FLOWING / NOT_FLOWING bookkeeping for one direction of one media kind."""

    __slots__ = ("flowing", "last")

    def __init__(self) -> None:
        self.flowing = False
        self.last = 0.0


class _OutTrack(MediaStreamTrack):
    """The track a sink sends: frames pushed by whichever source is connected to it."""

    def __init__(self, endpoint: AiortcEndpoint, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._endpoint = endpoint
        # None is the stop() sentinel that wakes a pending recv().
        self._queue: asyncio.Queue[Media | None] = asyncio.Queue(maxsize=OUT_QUEUE_SIZE[kind])

    def push(self, frame: Media) -> None:
        if self.readyState != "live":
            return
        if self._queue.full():
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
        self._queue.put_nowait(frame)

    async def recv(self) -> Media:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        self._endpoint._mark_flow("out", self.kind)
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            # wake up a pending recv()
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                try:
                    self._queue.get_nowait()
                    self._queue.put_nowait(None)
                except (asyncio.QueueEmpty, asyncio.QueueFull):
                    pass


class AiortcEndpoint:
    def __init__(
        self,
        backend: AiortcBackend,
        endpoint_id: str,
        emit: Emit,
        *,
        recvonly: bool = False,
        sendonly: bool = False,
    ) -> None:
        self._backend = backend
        self.endpoint_id = endpoint_id
        self._emit_cb = emit
        self.recvonly = recvonly
        self.sendonly = sendonly
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._released = False
        self._remote_set = False
        self._local_sdp: str | None = None
        self._pending_candidates: list[tuple[str, str | None, int | None]] = []
        self._gather_requested = False
        self._gather_done = False
        self._remote_bundle_first: dict[str, str] = {}
        self._remote_mids: list[str] = []
        # sending side
        self._out_tracks: dict[str, _OutTrack] = {}
        # receiving side: sink endpoints per kind, and our own source per kind
        self._sinks: dict[str, list[AiortcEndpoint | AiortcRecorder]] = {k: [] for k in KINDS}
        self._source: dict[str, AiortcEndpoint | None] = {k: None for k in KINDS}
        self._tasks: set[asyncio.Task[None]] = set()
        self._flow = {("in", k): _FlowState() for k in KINDS} | {("out", k): _FlowState() for k in KINDS}
        self._ice_state: str | None = None
        self._connected = False
        self._pair_announced = False
        self._connecting_pending = False
        self._pc.on("track", self._on_track)
        self._pc.on("iceconnectionstatechange", self._on_ice_state)
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._spawn(self._flow_monitor())

    # ------------------------------------------------------------------ helpers
    def _emit(self, event_type: str, fields: dict[str, Any]) -> None:
        if self._released:
            return
        try:
            self._emit_cb(event_type, fields)
        except Exception:  # the server's callback must never break media handling
            logger.exception("emit(%s) failed for %s", event_type, self.endpoint_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _out_track(self, kind: str) -> _OutTrack:
        track = self._out_tracks.get(kind)
        if track is None:
            track = self._out_tracks[kind] = _OutTrack(self, kind)
        return track

    def _mark_flow(self, direction: str, kind: str) -> None:
        state = self._flow[(direction, kind)]
        state.last = time.monotonic()
        if not state.flowing:
            state.flowing = True
            self._emit_flow(direction, kind, "FLOWING")

    def _emit_flow(self, direction: str, kind: str, value: str) -> None:
        event = "MediaFlowInStateChanged" if direction == "in" else "MediaFlowOutStateChanged"
        self._emit(event, {"state": value, "padName": "default", "mediaType": MEDIA_TYPE_OF_KIND[kind]})

    def _set_not_flowing(self, direction: str, kind: str) -> None:
        state = self._flow[(direction, kind)]
        if state.flowing:
            state.flowing = False
            self._emit_flow(direction, kind, "NOT_FLOWING")

    async def _flow_monitor(self) -> None:
        while True:
            await asyncio.sleep(FLOW_CHECK_INTERVAL)
            now = time.monotonic()
            for (direction, kind), state in self._flow.items():
                if state.flowing and now - state.last > FLOW_TIMEOUT:
                    self._set_not_flowing(direction, kind)

    # ------------------------------------------------------------------ media in
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind not in KINDS:
            return
        self._spawn(self._read_track(track))

    async def _read_track(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        offset: int | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            self._mark_flow("in", kind)
            if frame.pts is not None and frame.time_base:
                # On one clock for every source (since the emulator started), before any sink's encoder
                # sees it: a sink whose source is replaced (a re-offered publication) keeps sending
                # increasing timestamps, which a browser's jitter buffer needs, as Kurento's do.
                if offset is None:
                    offset = int((time.monotonic() - _CLOCK_EPOCH) / frame.time_base) - frame.pts
                frame.pts += offset
            for sink in self._sinks[kind]:
                out = sink._out_tracks.get(kind)
                if out is not None:
                    out.push(frame)
        self._set_not_flowing("in", kind)

    # ------------------------------------------------------------------ SDP
    def _attach_out_track(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        if kind in KINDS:
            transceiver.sender.replaceTrack(self._out_track(kind))

    def _remember_remote(self, sdp: str) -> None:
        desc = SessionDescription.parse(sdp)
        self._remote_mids = [m.rtp.muxId or str(i) for i, m in enumerate(desc.media)]
        for group in desc.group:
            if group.semantic == "BUNDLE" and group.items:
                # aiortc types group items as int | str; BUNDLE items are mids, parsed as str.
                for mid in group.items:
                    self._remote_bundle_first[str(mid)] = str(group.items[0])

    async def _set_remote(self, sdp: str, type_: str) -> None:
        try:
            self._remember_remote(sdp)
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
        except Exception as exc:
            raise ValueError(f"cannot process SDP {type_}: {exc}") from exc
        self._remote_set = True
        pending, self._pending_candidates = self._pending_candidates, []
        for cand in pending:
            await self._add_candidate(*cand)

    async def _set_local(self, description: RTCSessionDescription) -> str:
        await self._pc.setLocalDescription(description)
        self._local_sdp = self._pc.localDescription.sdp
        if self._gather_requested and not self._gather_done:
            self._spawn(self._announce_candidates())
        return strip_candidates(self._local_sdp)

    async def process_offer(self, offer: str) -> str:
        if not isinstance(offer, str) or "m=" not in offer:
            raise ValueError("unparsable SDP offer")
        try:
            parsed = SessionDescription.parse(offer)
        except Exception as exc:
            raise ValueError(f"unparsable SDP offer: {exc}") from exc
        await self._set_remote(offer, "offer")
        offer_dirs = [m.direction or "sendrecv" for m in parsed.media]
        for transceiver in self._pc.getTransceivers():
            index = transceiver._get_mline_index()
            remote_dir = offer_dirs[index] if index is not None and index < len(offer_dirs) else "sendrecv"
            remote_sends = remote_dir in ("sendrecv", "sendonly")
            remote_receives = remote_dir in ("sendrecv", "recvonly")
            we_send = remote_receives and not self.recvonly
            we_recv = remote_sends and not self.sendonly
            if we_send and we_recv:
                transceiver.direction = "sendrecv"
            elif we_send:
                transceiver.direction = "sendonly"
            elif we_recv:
                transceiver.direction = "recvonly"
            else:
                transceiver.direction = "inactive"
            if we_send:
                self._attach_out_track(transceiver)
        answer = await self._pc.createAnswer()
        return await self._set_local(answer)

    async def generate_offer(self) -> str:
        if self.recvonly:
            direction = "recvonly"
        elif self.sendonly:
            direction = "sendonly"
        else:
            direction = "sendrecv"
        for kind in KINDS:
            transceiver = self._pc.addTransceiver(kind, direction=direction)
            if direction != "recvonly":
                self._attach_out_track(transceiver)
        offer = await self._pc.createOffer()
        return await self._set_local(offer)

    async def process_answer(self, answer: str) -> str:
        if not isinstance(answer, str) or "m=" not in answer:
            raise ValueError("unparsable SDP answer")
        await self._set_remote(answer, "answer")
        return strip_candidates(self._local_sdp or "")

    # ------------------------------------------------------------------ ICE
    async def gather_candidates(self) -> None:
        if self._gather_requested:
            return
        self._gather_requested = True
        if self._local_sdp is not None:
            self._spawn(self._announce_candidates())

    async def _announce_candidates(self) -> None:
        if self._gather_done:
            return
        self._gather_done = True
        # Let the gatherCandidates response go out first.
        await asyncio.sleep(0)
        self._emit("IceComponentStateChanged", {"streamId": 0, "componentId": 1, "state": "GATHERING"})
        for cand in local_candidates_from_sdp(self._local_sdp or ""):
            self._emit("IceCandidateFound", {"candidate": cand})
        if self._connecting_pending:
            self._emit_connecting()
        self._emit("IceGatheringDone", {})

    async def add_ice_candidate(self, candidate: str, sdp_mid: str, sdp_mline_index: int) -> None:
        if self._released or not candidate or not candidate.strip():
            return  # empty candidate = end-of-candidates: ignored, like KMS
        if not self._remote_set:
            self._pending_candidates.append((candidate, sdp_mid, sdp_mline_index))
            return
        await self._add_candidate(candidate, sdp_mid, sdp_mline_index)

    async def _add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        cand = parse_candidate(candidate)
        if cand.ip.endswith(".local"):
            # Resolving mDNS names would send multicast off the loopback interface; the
            # remote's own checks still reach us and yield a peer-reflexive candidate.
            logger.debug("%s: ignoring mDNS candidate %r", self.endpoint_id, candidate)
            return
        mid = None if sdp_mid is None else str(sdp_mid)
        index = sdp_mline_index
        if mid is None and index is not None and 0 <= index < len(self._remote_mids):
            mid = self._remote_mids[index]
        # With BUNDLE, all m-lines share the transport of the group's first mid.
        if mid is not None and mid in self._remote_bundle_first:
            mid = self._remote_bundle_first[mid]
            index = self._remote_mids.index(mid) if mid in self._remote_mids else index
        cand.sdpMid = mid
        cand.sdpMLineIndex = index
        try:
            await self._pc.addIceCandidate(cand)
        except Exception:
            logger.warning("%s: remote candidate %r rejected", self.endpoint_id, candidate, exc_info=True)

    def _ice_connection(self) -> aioice.ice.Connection | None:
        for transceiver in self._pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is not None:
                return transport.transport._connection
        sctp = self._pc.sctp
        if sctp is not None:
            return sctp.transport.transport._connection
        return None

    def _on_ice_state(self) -> None:
        state = self._pc.iceConnectionState
        if state == self._ice_state:
            return
        self._ice_state = state

        def component(value: str) -> None:
            self._emit("IceComponentStateChanged", {"streamId": 0, "componentId": 1, "state": value})

        if state == "checking":
            # aiortc starts checking inside setLocalDescription; KMS reports GATHERING (on
            # gatherCandidates) before CONNECTING, so hold it back until then.
            if self._gather_done:
                self._emit_connecting()
            else:
                self._connecting_pending = True
        elif state in ("completed", "connected"):
            if self._connecting_pending:
                self._emit_connecting()
            self._announce_pair()
            component("CONNECTED")
            component("READY")
        elif state == "failed":
            component("FAILED")
        elif state in ("closed", "disconnected"):
            component("DISCONNECTED")

    def _emit_connecting(self) -> None:
        self._connecting_pending = False
        self._emit("IceComponentStateChanged", {"streamId": 0, "componentId": 1, "state": "CONNECTING"})

    def _announce_pair(self) -> None:
        if self._pair_announced:
            return
        conn = self._ice_connection()
        pair = None
        if conn is not None:
            pair = conn._nominated.get(1)
        if pair is None:
            return
        self._pair_announced = True
        self._emit(
            "NewCandidatePairSelected",
            {
                "candidatePair": {
                    "streamId": "0",
                    "componentId": 1,
                    "localCandidate": "candidate:" + pair.local_candidate.to_sdp(),
                    "remoteCandidate": "candidate:" + pair.remote_candidate.to_sdp(),
                }
            },
        )

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and not self._connected:
            self._connected = True
            self._announce_pair()
            for event in ("ConnectionStateChanged", "MediaStateChanged"):
                self._emit(event, {"oldState": "DISCONNECTED", "newState": "CONNECTED"})
        elif state in ("failed", "closed") and self._connected:
            self._connected = False
            for event in ("ConnectionStateChanged", "MediaStateChanged"):
                self._emit(event, {"oldState": "CONNECTED", "newState": "DISCONNECTED"})

    # ------------------------------------------------------------------ topology
    @staticmethod
    def _kinds(media_type: str | None) -> tuple[str, ...]:
        if media_type is None:
            return KINDS
        mt = str(media_type).upper()
        if mt == "AUDIO":
            return ("audio",)
        if mt == "VIDEO":
            return ("video",)
        return ()  # DATA: nothing to forward

    def connect(self, sink: EndpointMedia | AiortcRecorder, media_type: str | None) -> None:
        if not isinstance(sink, (AiortcEndpoint, AiortcRecorder)):
            return  # e.g. a signaling-only element: no real media to forward
        if self._released or sink._released:
            return
        for kind in self._kinds(media_type):
            current = sink._source[kind]
            if current is self:
                continue  # repeated connect is a no-op
            if current is not None and sink in current._sinks[kind]:
                current._sinks[kind].remove(sink)
            sink._source[kind] = self
            self._sinks[kind].append(sink)

    def disconnect(self, sink: EndpointMedia | AiortcRecorder, media_type: str | None) -> None:
        if not isinstance(sink, (AiortcEndpoint, AiortcRecorder)):
            return
        for kind in self._kinds(media_type):
            if sink in self._sinks[kind]:
                self._sinks[kind].remove(sink)
            if sink._source[kind] is self:
                sink._source[kind] = None
                sink._set_not_flowing("out", kind)

    async def release(self) -> None:
        if self._released:
            return
        # Detach from sources and sinks first, so nothing pushes into our tracks.
        for kind in KINDS:
            source = self._source[kind]
            if source is not None:
                source.disconnect(self, MEDIA_TYPE_OF_KIND[kind])
            for sink in list(self._sinks[kind]):
                self.disconnect(sink, MEDIA_TYPE_OF_KIND[kind])
        self._released = True
        self._backend._forget(self)
        for track in self._out_tracks.values():
            track.stop()
        for task in list(self._tasks):
            task.cancel()
        try:
            await self._pc.close()
        except Exception:
            logger.warning("%s: error while closing the peer connection", self.endpoint_id, exc_info=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class _RecordedTrack(_OutTrack):
    """What a recorder encodes: the source's frames, copied and stamped on the recording's own clock.

    A copy, because the same frame object also goes to every subscriber's encoder (in another
    thread); its own clock, because the decoded frames carry the publisher's RTP timestamps, which
    start anywhere and restart with each new source (a re-offer)."""

    def __init__(self, sink: AiortcRecorder, kind: str) -> None:
        super().__init__(sink, kind)  # type: ignore[arg-type]  # it only calls _mark_flow on it
        self._sink = sink
        self._started = time.monotonic()
        self._next_pts = 0

    def push(self, frame: Media) -> None:
        super().push(frame)
        if self.kind == "video":
            self._sink._video_queued()

    async def recv(self) -> Media:
        while True:
            frame = await super().recv()
            copied = self._copy(frame)
            if copied is not None:
                return copied

    def _copy(self, frame: Media) -> Frame | None:
        copy: VideoFrame | AudioFrame
        if isinstance(frame, VideoFrame):
            copy = VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            time_base, length = Fraction(1, 90000), 1
        elif isinstance(frame, AudioFrame):
            copy = AudioFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name)
            copy.sample_rate = frame.sample_rate
            time_base, length = Fraction(1, frame.sample_rate), frame.samples
        else:
            return None  # an encoded packet: nothing to encode it from
        pts = max(self._next_pts, int((time.monotonic() - self._started) / time_base))
        copy.pts, copy.time_base = pts, time_base
        self._next_pts = pts + length
        return copy


class AiortcRecorder:
    """The media of a RecorderEndpoint: a sink for the endpoints connected to it (like a WebRtcEndpoint
    sink, one source per kind) whose frames aiortc's MediaRecorder encodes into a file.

    The tracks exist only while recording, so frames reach it only then (AiortcEndpoint._read_track
    pushes to the tracks a sink has)."""

    def __init__(self, endpoint_id: str, uri: str, profile: str) -> None:
        self.endpoint_id = endpoint_id
        self.uri = uri
        self.profile = profile
        self._released = False
        self._source: dict[str, AiortcEndpoint | None] = {k: None for k in KINDS}
        self._out_tracks: dict[str, _OutTrack] = {}
        self._recorder: MediaRecorder | None = None
        self._recorder_started = False
        self._on_first_media: Callable[[], None] | None = None

    def _mark_flow(self, direction: str, kind: str) -> None:
        if self._on_first_media is not None:
            announce, self._on_first_media = self._on_first_media, None
            announce()

    def _set_not_flowing(self, direction: str, kind: str) -> None:
        return None

    async def start(self, on_first_media: Callable[[], None]) -> None:
        path = recorder.local_path(self.uri)
        if path is None:
            raise ValueError(f"only file:// URIs are written by the emulator (got {self.uri!r})")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        media_recorder = MediaRecorder(path, format=recorder.container_of(self.profile))
        # Video first, and started only once a video frame waits: MediaRecorder sizes the video stream
        # from its first frame, which must come before any packet opens the container's codecs (an
        # audio packet first leaves it at the default size: "Cannot change width after codec is open").
        for kind in sorted(recorder.kinds_of(self.profile), reverse=True):
            track = self._out_tracks[kind] = _RecordedTrack(self, kind)
            media_recorder.addTrack(track)
        self._on_first_media = on_first_media
        self._recorder = media_recorder
        if "video" not in self._out_tracks:
            await self._start_recorder()

    def _video_queued(self) -> None:
        if not self._recorder_started and self._recorder is not None:
            self._recorder_started = True
            asyncio.ensure_future(self._recorder.start())

    async def _start_recorder(self) -> None:
        if not self._recorder_started and self._recorder is not None:
            self._recorder_started = True
            await self._recorder.start()

    async def stop(self) -> None:
        media_recorder, self._recorder = self._recorder, None
        self._recorder_started = False
        tracks, self._out_tracks = list(self._out_tracks.values()), {}
        for track in tracks:
            track.stop()
        if media_recorder is not None:
            await media_recorder.stop()

    async def release(self) -> None:
        for kind in KINDS:
            source = self._source[kind]
            if source is not None:
                source.disconnect(self, MEDIA_TYPE_OF_KIND[kind])
        self._released = True


class AiortcBackend:
    def __init__(self) -> None:
        _install_loopback_only()
        self._endpoints: dict[str, AiortcEndpoint] = {}

    def create_endpoint(
        self,
        endpoint_id: str,
        emit: Emit,
        *,
        recvonly: bool = False,
        sendonly: bool = False,
    ) -> AiortcEndpoint:
        endpoint = AiortcEndpoint(self, endpoint_id, emit, recvonly=recvonly, sendonly=sendonly)
        self._endpoints[endpoint_id] = endpoint
        return endpoint

    def create_recording_sink(self, endpoint_id: str, uri: str, profile: str) -> AiortcRecorder:
        return AiortcRecorder(endpoint_id, uri, profile)

    def _forget(self, endpoint: AiortcEndpoint) -> None:
        if self._endpoints.get(endpoint.endpoint_id) is endpoint:
            del self._endpoints[endpoint.endpoint_id]

    async def close(self) -> None:
        endpoints = list(self._endpoints.values())
        await asyncio.gather(*(e.release() for e in endpoints), return_exceptions=True)
        self._endpoints.clear()
