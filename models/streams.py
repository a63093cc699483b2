"""Stream names of the REST contract, and what they mean for the records (issue 15).

A publication is named: `stream` "publish" is "publish:main", "publish:<name>" another one of the
same participant; "<pid>" receives that publisher's main publication, "<pid>:<name>" another. The
records keep the forms old clients use for `main` ("publish", "<pid>"), so every record, message
and client of one publication per participant stays as it was; other names keep their suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PUBLISH = "publish"
MAIN = "main"
MAX_PUBLICATIONS = 4
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")


class BadStreamName(ValueError):
    """The name after the colon does not match NAME_PATTERN."""


@dataclass(frozen=True)
class StreamRef:
    """A stream as the records name it: whose publication (`publisher_id`), which (`name`), and
    whether it is the publisher's own outgoing stream or a subscription to it."""

    stream: str  # canonical: "publish", "publish:<name>", "<pid>" or "<pid>:<name>"
    publisher_id: str
    name: str
    publishing: bool

    @property
    def publish_stream(self) -> str:
        """The stream of the publisher's record of this publication."""
        return publish_stream(self.name)


def publish_stream(name: str) -> str:
    return PUBLISH if name == MAIN else f"{PUBLISH}:{name}"


def subscription_stream(publisher_id: str, name: str) -> str:
    return publisher_id if name == MAIN else f"{publisher_id}:{name}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BadStreamName(name)
    return name


def parse(participant_id: str, stream: str) -> StreamRef:
    """What a stream sent by `participant_id` names; BadStreamName for a malformed name."""
    head, colon, name = stream.partition(":")
    name = check_name(name) if colon else MAIN
    if head == PUBLISH:
        return StreamRef(publish_stream(name), participant_id, name, True)
    return StreamRef(subscription_stream(head, name), head, name, False)


def is_publish(stream: str) -> bool:
    """Whether a record's stream is its participant's own publication."""
    return stream == PUBLISH or stream.startswith(PUBLISH + ":")


def name_of(stream: str) -> str:
    """The publication name of a record's stream (publish or subscription)."""
    return stream.partition(":")[2] or MAIN


def publisher_of(participant_id: str, stream: str) -> str:
    return participant_id if is_publish(stream) else stream.partition(":")[0]


def sent_kinds(sdp: str) -> tuple[bool, bool]:
    """(audio, video): whether the offer sends that kind, from its m-lines and their directions
    (a port of 0 rejects a section; the session-level direction is the default, sendrecv the last)."""
    session_direction = "sendrecv"
    sends = {"audio": False, "video": False}
    kind: str | None = None
    port = ""
    direction: str | None = None

    def close_section() -> None:
        if kind in sends and port != "0" and (direction or session_direction) in ("sendrecv", "sendonly"):
            sends[kind] = True

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close_section()
            fields = line[2:].split()
            kind, port, direction = (fields[0], fields[1], None) if len(fields) > 1 else (None, "", None)
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            if kind is None:
                session_direction = line[2:]
            else:
                direction = line[2:]
    close_section()
    return sends["audio"], sends["video"]
