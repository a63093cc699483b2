"""RecorderEndpoint: the UriEndpoint state machine KMS runs, over a sink that may write a real file.

States (UriEndpointState) go STOP → START on `record`, START ↔ PAUSE, and back to STOP on `stop` or
`stopAndWait`; each change raises `UriEndpointStateChanged {state}`. `Recording` follows `record`
once media is written (KMS: "media is received by the recorder and record() has been called"),
`Paused` follows `pause`, and `Stopped` follows a stop once the file is complete: `stopAndWait`
answers only then, `stop` at once.

The signaling mode has no media: its sink writes nothing and `Recording` follows `record` at once.
The media mode's sink (kms_emulator.media.AiortcRecorder) encodes what its source endpoint
forwards with aiortc's MediaRecorder into the file the `uri` names.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from kms_emulator.registry import Emit

log = logging.getLogger(__name__)

# KMS's own list (elements.kmd MediaProfileSpecType), kept apart from kurento.objects on purpose:
# the emulator stands in for the server, so a client that sends a wrong profile must meet a refusal.
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


def kinds_of(profile: str) -> tuple[str, ...]:
    """The media kinds a profile stores."""
    if profile.endswith("_AUDIO_ONLY"):
        return ("audio",)
    if profile.endswith("_VIDEO_ONLY"):
        return ("video",)
    return ("audio", "video")


def container_of(profile: str) -> str:
    """The FFmpeg muxer of a profile (what aiortc's MediaRecorder is opened with)."""
    family = profile.split("_", 1)[0]
    return {"WEBM": "webm", "MKV": "matroska", "MP4": "mp4", "FLV": "flv", "JPEG": "image2"}.get(family, "webm")


def local_path(uri: str) -> str | None:
    """The file a `file://` URI names; None for any other scheme (http(s) uploads are not emulated)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" and parsed.path else None


class RecordingSink(Protocol):
    """Where a recorder's media goes: `start` opens the file, `stop` completes it."""

    async def start(self, on_first_media: Any) -> None: ...

    async def stop(self) -> None: ...

    async def release(self) -> None: ...


class NoMediaSink:
    """Signaling mode: nothing is written; media "arrives" as soon as recording starts."""

    async def start(self, on_first_media: Any) -> None:
        on_first_media()

    async def stop(self) -> None:
        return None

    async def release(self) -> None:
        return None


class Recorder:
    """One RecorderEndpoint's state and events; the operations (kms_emulator.operations) call it."""

    def __init__(self, emit: Emit, sink: RecordingSink) -> None:
        self._emit = emit
        self.sink = sink
        self.state = "STOP"
        self._lock = asyncio.Lock()

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit("UriEndpointStateChanged", {"state": state})

    async def record(self) -> None:
        async with self._lock:
            if self.state == "START":
                return
            resuming = self.state == "PAUSE"
            self._set_state("START")
            if resuming:
                self._emit("Recording", {})
                return
            try:
                await self.sink.start(lambda: self._emit("Recording", {}))
            except Exception as exc:  # KMS reports a sink that cannot open as an Error event
                log.warning("recorder cannot start: %s", exc)
                self._emit("Error", {"description": f"Cannot record: {exc}", "errorCode": 1, "type": "RECORDER"})

    async def pause(self) -> None:
        async with self._lock:
            if self.state == "START":
                self._set_state("PAUSE")
                self._emit("Paused", {})

    async def stop(self, *, wait: bool) -> None:
        """`stop` (wait False) answers at once and finishes in the background; `stopAndWait` after."""
        if not wait:
            asyncio.ensure_future(self.stop(wait=True))
            return
        async with self._lock:
            if self.state == "STOP":
                return
            self._set_state("STOP")
            try:
                await self.sink.stop()
            except Exception as exc:
                log.warning("recorder could not complete its file: %s", exc)
                self._emit("Error", {"description": f"Cannot finish: {exc}", "errorCode": 1, "type": "RECORDER"})
                return
            self._emit("Stopped", {})

    async def release(self) -> None:
        """A released recorder completes its file quietly (no event reaches a released object anyway)."""
        async with self._lock:
            if self.state != "STOP":
                self.state = "STOP"
                try:
                    await self.sink.stop()
                except Exception:
                    log.warning("recorder could not complete its file on release", exc_info=True)
            await self.sink.release()
