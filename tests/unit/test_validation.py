from __future__ import annotations

import json
from pathlib import Path

import pytest
from marshmallow import ValidationError

from signaling_web.validation import validate_candidate, validate_name, validate_sdp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "browser-sdp"
OFFERS = sorted(FIXTURES.glob("*.sdp"))


@pytest.mark.parametrize("path", OFFERS, ids=lambda p: p.name)
def test_every_real_chromium_offer_is_accepted(path):
    validate_sdp(path.read_text(), 64 * 1024)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.candidates.json")), ids=lambda p: p.name)
def test_every_real_chromium_candidate_is_accepted(path):
    for candidate in json.loads(path.read_text()):
        validate_candidate(candidate["candidate"], 1024)


@pytest.mark.parametrize(
    "sdp, reason",
    [
        ("", "v=0"),
        ("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n", "v=0"),
        ("v=0\r\ns=-\r\n", "no m= line"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "exactly one a=mid"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=mid:1\r\n", "exactly one a=mid"),
        ("v=0\r\nm=audio 9 X 1\r\na=mid:0\r\nm=video 9 X 2\r\n", "m-line 1"),
        (" v=0\r\nm=audio 9 X 1\r\na=mid:0\r\n", "v=0"),  # a line is not trimmed on the left
        ("v=0\r\n m=audio 9 X 1\r\na=mid:0\r\n", "no m= line"),
        ("v=0\r\nm=audio 9 X 1\r\n a=mid:0\r\n", "exactly one a=mid"),
        ("v=0\r\nm=audio 9 X 1 a=mid:0\r\n", "exactly one a=mid"),  # only at the start of a line
    ],
)
def test_malformed_offers_are_refused(sdp, reason):
    with pytest.raises(ValidationError, match=reason):
        validate_sdp(sdp, 64 * 1024)


@pytest.mark.parametrize(
    "sdp",
    [
        "\r\n  \r\nv=0\r\r\nm=audio 9 X 1\r\na=mid:0\r\n",  # blank lines first, CRs trimmed on the right
        "v=0\nm=audio 9 X 1\n\na=mid:0",  # bare LF, a blank line, no final newline
        "v=0\r\na=mid:x\r\nm=audio 9 X 1\r\na=mid:0\r\n",  # before the first m-line: in no section
    ],
)
def test_line_handling_of_accepted_offers(sdp):
    validate_sdp(sdp, 64 * 1024)


def test_oversized_offer_is_refused():
    big = "v=0\r\nm=audio 9 X 1\r\na=mid:0\r\n" + "a=x:" + "y" * 70000 + "\r\n"
    with pytest.raises(ValidationError, match="larger than"):
        validate_sdp(big, 64 * 1024)


@pytest.mark.parametrize("candidate", ["host 1 udp", "c" * 2000, "candidate" + ":x" * 600])
def test_bad_candidates_are_refused(candidate):
    with pytest.raises(ValidationError):
        validate_candidate(candidate, 1024)


def test_empty_candidate_is_the_end_of_candidates_marker():
    validate_candidate("", 1024)


@pytest.mark.parametrize(
    "name",
    [
        "   ",
        "\t\n",
        "ali\x00ce",
        "bob\x1b[31m",
        "\u202eevil",  # right-to-left override: the name would read backwards
        "a\u2028b",  # line separator
        "zero\u200bwidth",  # zero-width space, a format character
    ],
)
def test_names_people_read_refuse_control_format_and_blank_text(name):
    with pytest.raises(ValidationError):
        validate_name(name)


@pytest.mark.parametrize("name", ["", "Alice", "Zoë Müller", "李雷", "Ana-María O'Neil", "👩‍💻 dev"])
def test_ordinary_names_in_any_script_are_accepted(name):
    validate_name(name)


def test_offers_with_more_m_lines_than_the_cap_are_refused() -> None:
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{}\r\n"
    offer = "v=0\r\n" + "".join(section.format(i) for i in range(33))
    with pytest.raises(ValidationError, match="33 m-lines; at most 32"):
        validate_sdp(offer, 64 * 1024, max_media_sections=32)
    validate_sdp("v=0\r\n" + "".join(section.format(i) for i in range(32)), 64 * 1024, max_media_sections=32)
