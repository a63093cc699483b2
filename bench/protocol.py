"""The small client interface every scenario (bench/scenarios) is written against.

Two adapters implement it: bench/client.py for our REST contract and bench/janus_client.py for
Janus's REST API with the VideoRoom plugin. Whatever differs between the two systems lives in
those adapters; a step one system cannot take over REST without media (subscribing, chat)
belongs to `PeerClient`, which only our adapter implements.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from bench.inbox import Inbox

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "browser-sdp"


@dataclass(frozen=True)
class Fixtures:
    """A Chromium publish and subscribe offer with their trickled candidates."""

    publish: str
    subscribe: str
    publish_candidates: list[dict]
    subscribe_candidates: list[dict]

    @classmethod
    def load(cls) -> Fixtures:
        def candidates(name: str) -> list[dict]:
            return list(json.loads((FIXTURES / f"chromium-{name}.candidates.json").read_text()))

        return cls(
            publish=(FIXTURES / "chromium-publish.sdp").read_text(),
            subscribe=(FIXTURES / "chromium-subscribe.sdp").read_text(),
            publish_candidates=candidates("publish"),
            subscribe_candidates=candidates("subscribe"),
        )

    def publish_generation(self, n: int) -> tuple[str, list[dict]]:
        """The publish offer and its candidates as the n-th RTCPeerConnection of a browser makes
        them: a fresh ICE username (ufrag) each time, as our JS client re-offers (a new peer
        connection per negotiation), so the service can tell which offer a candidate belongs to."""
        ufrag = re.search(r"a=ice-ufrag:(\S+)", self.publish)
        if ufrag is None:
            return self.publish, self.publish_candidates
        old, new = ufrag.group(1), f"b{n:05d}"[-6:]
        return self.publish.replace(f"a=ice-ufrag:{old}", f"a=ice-ufrag:{new}"), [
            {**c, "candidate": c["candidate"].replace(f" ufrag {old}", f" ufrag {new}")}
            for c in self.publish_candidates
        ]


@dataclass(frozen=True)
class IdleNames:
    """What a system's `idle_polls` figures are called in bench.json (kept from the first runs)."""

    entered: str  # how many clients got as far as holding a poll
    entered_s: str  # how long getting them there took
    process: str  # the process holding the polls: "<process>_at_rest", "<process>_holding_polls"


class Client(Protocol):
    """One participant with one long poll; every `-> float` step returns milliseconds."""

    name: str
    inbox: Inbox
    errors: int  # failed polls, retried

    def connect(self) -> None:
        """What precedes a join and is not part of it (Janus: session and plugin handle)."""

    def join(self, confirm: bool = True) -> float:
        """Join the room; with `confirm`, until the system's confirmation reached the long poll.

        Without it, only as far as the system lets a client go without polling; `start_polling`
        (or an `offer`) then reads what follows."""

    def start_polling(self) -> None:
        """Keep one long poll outstanding from now on (idempotent)."""

    def offer(self, sdp: str, candidates: list[dict] | None = None, timeout: float = 20.0) -> float:
        """Publish an offer, then trickle `candidates`, until the answer was read."""

    def reoffer(self, sdp: str, timeout: float = 20.0) -> float:
        """A new offer on the stream already published, until its answer was read."""

    def announces_my_join(self, message: dict) -> bool:
        """Whether another client's `message` tells it that this client joined."""

    def enter_idle(self) -> None:
        """As little as makes a poll legal, then only the poll connection stays open."""

    def idle_poll(self, wait: float) -> None:
        """One long poll, held until it returns."""

    def leave(self) -> None: ...

    def stop(self) -> None:
        """Stop polling and close the connections (no request)."""


@runtime_checkable
class PeerClient(Client, Protocol):
    """What only our REST contract offers without media: subscribing and chat."""

    def subscribe(self, publisher: PeerClient, sdp: str, candidates: list[dict], timeout: float = 20.0) -> float: ...

    def send(self, payload: dict, to: PeerClient | None = None) -> None: ...

    def carries(self, message: dict, payload: dict) -> bool:
        """Whether `message` is the chat message with this `payload`."""

    def drain(self) -> None:
        """Read what waits in the queue without waiting for more."""


class Room(Protocol):
    def client(self, name: str) -> Client: ...


class System(Protocol):
    """A system under test, started by the suite; its rooms and what its processes cost."""

    name: str
    # Janus: a publisher handle publishes once, so one sequential client is a fresh participant
    # per offer (docs/benchmarks.md); ours: one participant re-offering.
    fresh_client_per_offer: bool
    idle_names: IdleNames
    poll_holder_pid: int  # the process whose cost the idle polls measure

    def room(self, capacity: int, announce_joins: bool = False) -> Room: ...

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far, per tier."""

    def rss_mib(self) -> dict[str, float]:
        """Resident memory now, per tier."""

    def close(self) -> None: ...
