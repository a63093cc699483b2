"""Checks on what clients send before anything is queued: names, metadata, SDP offers and ICE candidates."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from marshmallow import ValidationError

# Other people see these names: no control or format characters (bidi overrides can make a name
# read as something else), no line or paragraph separators, no private-use or unassigned code points.
_UNPRINTABLE = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}
# Format characters that written languages and emoji need: zero-width non-joiner and joiner.
_JOINERS = {"\u200c", "\u200d"}


def validate_name(value: str) -> None:
    """A name people read: printable text, not only white space (empty is the caller's choice)."""
    if value and not value.strip():
        raise ValidationError("must not be only white space.")
    for char in value:
        if unicodedata.category(char) in _UNPRINTABLE and char not in _JOINERS:
            raise ValidationError(f"must not contain control or format characters (found U+{ord(char):04X}).")


def _first_line(text: str) -> str:
    """The first line that is not blank, without its trailing CRs ("" if there is none)."""
    start = 0
    while True:
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip():
            return line.rstrip("\r")
        if end < 0:
            return ""
        start = end + 1


def validate_sdp(sdp: str, max_bytes: int, max_media_sections: int | None = None) -> None:
    # On every offer: string searches rather than a list of lines (a browser's offer has 100 to
    # 200 of them). A media section is what follows a line starting with m=, up to the next one.
    if len(sdp.encode()) > max_bytes:
        raise ValidationError(f"SDP is larger than {max_bytes} bytes.")
    if _first_line(sdp) != "v=0":
        raise ValidationError("SDP must start with v=0.")
    media_sections = sdp.split("\nm=")[1:]
    if not media_sections:
        raise ValidationError("SDP has no m= line.")
    if max_media_sections is not None and len(media_sections) > max_media_sections:
        # Each m-line costs the media server an element's worth of work and the stored answer grows
        # with it; a call needs a handful.
        raise ValidationError(f"SDP has {len(media_sections)} m-lines; at most {max_media_sections} are accepted.")
    for index, section in enumerate(media_sections):
        mids = section.count("\na=mid:")
        if mids != 1:
            raise ValidationError(f"m-line {index} must have exactly one a=mid (found {mids}).")


def validate_candidate(candidate: str, max_bytes: int) -> None:
    # An empty string is the browser's end-of-candidates marker; it is accepted and ignored.
    if candidate == "":
        return
    if len(candidate.encode()) > max_bytes:
        raise ValidationError(f"candidate is larger than {max_bytes} bytes.")
    if not candidate.startswith("candidate:"):
        raise ValidationError("candidate must start with 'candidate:'.")


MAX_METADATA_BYTES = 4096


def validate_metadata(value: dict[str, Any] | None) -> None:
    """A participant's metadata: a JSON object of at most 4 KiB (as compact UTF-8 JSON), which
    everyone in the session receives with each participant entry."""
    if value is not None and len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata is larger than {MAX_METADATA_BYTES} bytes.")
