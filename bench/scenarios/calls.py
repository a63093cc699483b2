"""`calls`: sessions of N participants join at a given rate; each publishes (chromium-publish.sdp
+ its candidates, trickled in one request), then where the system allows it (`PeerClient`)
subscribes to every other publisher and sends one broadcast and one direct message; all leave.

Bounded by a deadline: greenlets still running then are killed and counted as timeouts, so a
slow or broken system never hangs the benchmark.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import gevent
from gevent.event import Event

from bench.protocol import Client, Fixtures, PeerClient, Room, System
from bench.recorder import Recorder, paced, run_bounded
from bench.scenarios.common import connect_and_join, leave_all


@dataclass
class _Session:
    room: Room
    size: int
    published: list[Client] = field(default_factory=list)
    everyone_published: Event = field(default_factory=Event)

    def publish_done(self, me: Client, ok: bool) -> None:
        if ok:
            self.published.append(me)
        if len(self.published) >= self.size or not ok:
            self.everyone_published.set()


@dataclass
class _Script:
    rec: Recorder
    fx: Fixtures
    step_timeout: float
    members: list[Client] = field(default_factory=list)

    def run(self, session: _Session, name: str) -> None:
        me = session.room.client(name)
        self.members.append(me)
        if not self.rec.timed("join_to_ready", lambda: connect_and_join(me)):
            return
        fx = self.fx
        ok = self.rec.timed(
            "offer_to_answer", lambda: me.offer(fx.publish, fx.publish_candidates, timeout=self.step_timeout)
        )
        session.publish_done(me, ok)
        if isinstance(me, PeerClient):
            session.everyone_published.wait(self.step_timeout)
            self.subscribe_and_chat(me, [p for p in session.published if p is not me and isinstance(p, PeerClient)])

    def subscribe_and_chat(self, me: PeerClient, peers: list[PeerClient]) -> None:
        fx = self.fx
        for other in peers:

            def subscribe(o: PeerClient = other) -> float:
                return me.subscribe(o, fx.subscribe, fx.subscribe_candidates, timeout=self.step_timeout)

            self.rec.timed("subscribe_offer_to_answer", subscribe)
        try:
            me.send({"hello": me.name})
            if peers:
                me.send({"direct": me.name}, to=random.choice(peers))
        except Exception as exc:  # noqa: BLE001
            self.rec.error("message", exc)


def calls(
    system: System,
    fx: Fixtures,
    sessions: int = 50,
    participants: int = 4,
    rate: float = 50.0,
    duration: float = 60.0,
    step_timeout: float = 15.0,
) -> dict:
    """Every participant joins, publishes, subscribes to all others, sends messages, leaves."""
    rec = Recorder()
    rooms = [_Session(system.room(participants), participants) for _ in range(sessions)]
    script = _Script(rec, fx, step_timeout)
    started = time.monotonic()
    greenlets = paced(sessions * participants, rate, lambda i: gevent.spawn(script.run, rooms[i % sessions], f"p{i}"))
    unfinished = run_bounded(greenlets, started + duration, rec)
    elapsed = time.monotonic() - started
    leave_all(script.members)
    result = rec.report() | {
        "sessions": sessions,
        "participants": participants,
        "join_rate_per_s": rate,
        "elapsed_s": round(elapsed, 1),
        "unfinished_participants": unfinished,
        "poll_errors": sum(m.errors for m in script.members),
    }
    if any(isinstance(m, PeerClient) for m in script.members):
        result["messages_received"] = sum(len(m.inbox) for m in script.members)
    result["_samples"] = rec.samples  # for the plot; the suite pops it
    return result
